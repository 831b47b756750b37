"""Model identity, snapshot version and limits."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import StateDep
from service.schemas.info import InfoResponse, LimitsInfo, ModelInfo, SnapshotInfo

router = APIRouter(prefix="/v1", tags=["info"])


@router.get("/info", response_model=InfoResponse)
def get_info(state: StateDep) -> InfoResponse:
    """Return the loaded model's identity, the serving snapshot and the request limits."""
    settings, encoder, snapshot = state.settings, state.encoder, state.snapshots.current
    return InfoResponse(
        model=ModelInfo(source=encoder.source, fingerprint=encoder.fingerprint, embed_dim=encoder.embed_dim,
                        image_size=encoder.image_size, identity=encoder.identity),
        snapshot=None if snapshot is None else SnapshotInfo(
            version=snapshot.version, image_count=snapshot.image_count,
            caption_count=snapshot.caption_count, embed_dim=snapshot.embed_dim),
        limits=LimitsInfo(max_upload_bytes=settings.max_upload_bytes, max_image_pixels=settings.max_image_pixels,
                          max_text_chars=settings.max_text_chars, max_k=settings.max_k,
                          default_k=settings.default_k),
        admin_enabled=settings.admin_enabled,
        batch_max_size=settings.batch_max_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
    )
