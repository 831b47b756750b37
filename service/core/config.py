"""Service settings, read from ``HARMA_*`` environment variables or a ``.env`` file.

Every field below is one setting; its environment variable is the field name
in upper case with the ``HARMA_`` prefix, for example ``HARMA_ADMIN_TOKEN``.
List fields take JSON (``HARMA_CORS_ORIGINS='["http://localhost:3000"]'``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings of one service process."""

    model_config = SettingsConfigDict(env_prefix="HARMA_", env_file=".env", extra="ignore")

    # Model and data
    model: str = Field("default", description=(
        "Encoder source: 'default' (the shipped offline model), an adapter checkpoint "
        "directory written by the training job, or 'tiny-vit' / 'tiny-conv-bert' (random test models)."))
    device: Optional[str] = Field(None, description="Torch device such as 'cpu' or 'cuda:0'; unset picks CUDA when available.")
    snapshot_dir: Path = Field(Path("var/snapshots"), description="Folder that holds the published index snapshots.")
    archive_dir: Path = Field(Path("data"), description="Image archive that admin rebuilds and updates embed.")
    caption_files: list[Path] = Field(default_factory=list, description=(
        "Extra annotation files whose captions join the caption corpus on rebuild (JSON list of paths)."))
    build_batch_size: int = Field(32, ge=1, le=4096, description="Images per encoder batch during rebuilds.")
    build_workers: int = Field(2, ge=0, le=64, description="Image-decoding worker processes during rebuilds.")

    # Server
    host: str = Field("127.0.0.1", description="Address that harma-serve binds.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port that harma-serve binds.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Root log level.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty disables CORS.")
    admin_token: Optional[SecretStr] = Field(None, description=(
        "Bearer token of the admin endpoints; unset disables them (403)."))

    # Request limits
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest accepted image upload, in bytes.")
    max_image_pixels: int = Field(64_000_000, ge=1024, description=(
        "Largest accepted width x height of an uploaded image, checked before decoding (decompression bombs)."))
    max_text_chars: int = Field(1000, ge=1, description="Longest accepted text query, in characters.")
    max_k: int = Field(100, ge=1, description="Largest number of results one query may request.")
    default_k: int = Field(10, ge=1, description="Results returned when a query gives no k.")

    # Query execution
    batch_max_size: int = Field(16, ge=1, le=1024, description=(
        "Most queries encoded in one micro-batch; 1 encodes each query on its own."))
    batch_max_wait_ms: float = Field(5.0, ge=0.0, le=1000.0, description=(
        "Longest time a micro-batch waits for more queries, in milliseconds. It waits only while it "
        "holds fewer queries than the previous batch did, so a lone client waits only once, right after "
        "concurrent load; "
        "0 batches only the queries that arrived while the encoder was busy."))
    max_pending_queries: int = Field(256, ge=1, description=(
        "Queries waiting for the encoder before new ones get 503."))
    search_nprobe: Optional[int] = Field(None, ge=1, description="FAISS IVF nprobe per search; unset uses the snapshot's value.")
    search_ef_search: Optional[int] = Field(None, ge=1, description="FAISS HNSW efSearch per search; unset uses the snapshot's value.")
    thumbnail_px: int = Field(256, ge=16, le=2048, description="Longest side of served thumbnails, in pixels.")
    thumbnail_cache_items: int = Field(512, ge=0, description="Thumbnails kept in memory.")

    @field_validator("admin_token")
    @classmethod
    def _empty_token_is_unset(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @property
    def admin_enabled(self) -> bool:
        return self.admin_token is not None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process settings, read once from the environment."""
    return Settings()
