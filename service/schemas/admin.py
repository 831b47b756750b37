"""Schemas of the admin endpoints."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


class SkippedFile(BaseModel):
    path: str
    reason: str


class JobProgress(BaseModel):
    stage: str
    done: int
    total: int


class JobResponse(BaseModel):
    id: str
    kind: str = Field(..., description="'rebuild' (embed the whole archive) or 'update' (embed new files only).")
    state: str = Field(..., description="queued, running, succeeded or failed.")
    progress: JobProgress
    created_at: float = Field(..., description="Unix time in seconds.")
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    snapshot_version: Optional[str] = None
    image_count: Optional[int] = None
    caption_count: Optional[int] = None
    reused: Optional[int] = Field(None, description="Images whose vectors were reused from the previous snapshot.")
    embedded: Optional[int] = Field(None, description="Images embedded by this job.")
    skipped: list[SkippedFile] = Field(default_factory=list, description="Files left out, with the reason.")
    error: Optional[str] = None
    status_url: str


class JobAccepted(BaseModel):
    job_id: str
    kind: str
    state: str
    status_url: str
