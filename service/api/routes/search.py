"""Text-to-image and image-to-text search."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from service import retrieval
from service.core.errors import InvalidImage, InvalidRequest, PayloadTooLarge, Unavailable
from service.deps import StateDep
from service.imaging import decode_upload
from service.runtime import ServiceState
from service.schemas.errors import error_responses
from service.schemas.search import K_SCHEMA_MAX, ImageSearchResponse, TextSearchRequest, TextSearchResponse

router = APIRouter(prefix="/v1/search", tags=["search"])


def _require_ready(state: ServiceState) -> None:
    if not state.ready:
        raise Unavailable("no index snapshot is loaded yet; build one with POST /v1/admin/index/rebuild",
                          code="not_ready", retry_after_s=5)


@router.post("/text", response_model=TextSearchResponse, responses=error_responses(413, 422, 503))
async def search_text(request: TextSearchRequest, state: StateDep) -> TextSearchResponse:
    """Return the archive scenes that best match a text description, best first."""
    text = retrieval.check_text(state, request.text)
    k = retrieval.resolve_k(state, request.k)
    _require_ready(state)
    return await retrieval.search_by_text(state, text, k, request.min_score)


@router.post("/image", response_model=ImageSearchResponse,
             responses=error_responses(400, 404, 413, 415, 422, 503))
async def search_image(
    state: StateDep,
    file: Annotated[Optional[UploadFile], File(description="Query image (JPEG, PNG, TIFF, WebP, BMP or GIF).")] = None,
    image_id: Annotated[Optional[str], Form(max_length=512, description="Query by an archived image's id instead of an upload.")] = None,
    k: Annotated[Optional[int], Form(ge=1, le=K_SCHEMA_MAX, description="Number of captions and of scenes to return.")] = None,
    min_score: Annotated[Optional[float], Form(ge=-1.0, le=1.0, description="Drop results below this cosine similarity.")] = None,
) -> ImageSearchResponse:
    """Return the captions and similar scenes that best match an uploaded or archived image."""
    k = retrieval.resolve_k(state, k)
    image_id = image_id or None
    if file is None and image_id is None:
        raise InvalidRequest("send exactly one of 'file' (an image upload) or 'image_id', but neither was sent",
                             code="query_missing")
    if file is not None and image_id is not None:
        raise InvalidRequest("send exactly one of 'file' (an image upload) or 'image_id', but both were sent",
                             code="query_conflict")
    _require_ready(state)
    if image_id is not None:
        return await retrieval.search_by_image_id(state, image_id, k, min_score)
    data = await _read_upload(file, state.settings.max_upload_bytes)
    pixels = await run_in_threadpool(_decode_and_preprocess, state, data)  # [3, size, size]
    return await retrieval.search_by_image(state, pixels, k, min_score)


async def _read_upload(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes", code="upload_too_large")
    return data


def _decode_and_preprocess(state: ServiceState, data: bytes):
    snapshot = state.snapshots.current
    decode_options = snapshot.manifest.get("decode") if snapshot is not None else None
    image = decode_upload(data, max_pixels=state.settings.max_image_pixels, decode_options=decode_options)
    try:
        return state.encoder.preprocess_image(image)  # [3, size, size]
    except Exception as error:  # odd modes that survive decoding but not the transform
        raise InvalidImage(f"the uploaded image cannot be preprocessed: {error}", code="corrupt_image") from None
