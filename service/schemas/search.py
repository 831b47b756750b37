"""Schemas of the search endpoints."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

# Hard bounds of the schema; the configured limits (max_text_chars, max_k) are
# checked in the handlers and are usually lower.
TEXT_SCHEMA_MAX_CHARS = 100_000
K_SCHEMA_MAX = 10_000


class TextSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=TEXT_SCHEMA_MAX_CHARS,
                      description="Free-text description of the scenes to find.")
    k: Optional[int] = Field(None, ge=1, le=K_SCHEMA_MAX, description="Number of scenes to return.")
    min_score: Optional[float] = Field(None, ge=-1.0, le=1.0,
                                       description="Drop results whose cosine similarity is below this.")


class SceneResult(BaseModel):
    id: str
    score: float = Field(..., description="Cosine similarity to the query, in [-1, 1].")
    file_name: str
    image_url: str
    thumbnail_url: str
    label: Optional[str] = None
    geo: Optional[dict[str, Any]] = Field(None, description="GeoTIFF location metadata, when the file has it.")
    captions: list[str] = Field(default_factory=list, description="Captions of this scene in the archive.")


class ImageRef(BaseModel):
    id: str
    file_name: str
    image_url: str
    thumbnail_url: str


class CaptionResult(BaseModel):
    id: int
    text: str
    score: float = Field(..., description="Cosine similarity to the query image, in [-1, 1].")
    images: list[ImageRef] = Field(..., description="Archive images that this caption describes.")


class TextSearchResponse(BaseModel):
    snapshot_version: str
    results: list[SceneResult]


class ImageSearchResponse(BaseModel):
    snapshot_version: str
    query_image_id: Optional[str] = Field(None, description="The archive image queried by id, if any.")
    captions: list[CaptionResult]
    scenes: list[SceneResult] = Field(..., description="Similar archive scenes, without the query image itself.")
