"""Schemas of the health and info endpoints."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel


class HealthResponse(BaseModel):
    status: str


class ModelInfo(BaseModel):
    source: str
    fingerprint: str
    embed_dim: int
    image_size: int
    identity: dict[str, Any]


class SnapshotInfo(BaseModel):
    version: str
    image_count: int
    caption_count: int
    embed_dim: int


class LimitsInfo(BaseModel):
    max_upload_bytes: int
    max_image_pixels: int
    max_text_chars: int
    max_k: int
    default_k: int


class InfoResponse(BaseModel):
    model: ModelInfo
    snapshot: Optional[SnapshotInfo]
    limits: LimitsInfo
    admin_enabled: bool
    batch_max_size: int
    batch_max_wait_ms: float
