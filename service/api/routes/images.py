"""Archive images and thumbnails, looked up by id in the serving snapshot.

No file path ever comes from the client: the id is only a key into the
snapshot's metadata, which stores the path.
"""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from service.core.errors import NotFound
from service.deps import StateDep
from service.imaging import render_thumbnail
from service.runtime import ServiceState
from service.schemas.errors import error_responses

router = APIRouter(prefix="/v1/images", tags=["images"])

_IMAGE_RESPONSE = {200: {"content": {"image/*": {}}, "description": "The image file."}}


def _locate(state: ServiceState, image_id: str):
    with state.snapshots.lease() as snapshot:
        record = snapshot.get_image(image_id)
        version = snapshot.version
    if record is None:
        raise NotFound(f"image {image_id!r} not found in snapshot {version}", code="image_not_found")
    if not record.path.is_file():
        raise NotFound(f"the file of image {image_id!r} is missing from the archive", code="image_file_missing")
    return record, version


@router.get("/{image_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404, 503)})
async def get_thumbnail(image_id: str, state: StateDep) -> Response:
    """Return a JPEG thumbnail of an archive image."""
    def render() -> bytes:
        record, version = _locate(state, image_id)
        size = state.settings.thumbnail_px
        return state.thumbnails.get_or_render((version, record.id, size), lambda: render_thumbnail(record.path, size))

    data = await run_in_threadpool(render)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/{image_id}", response_class=FileResponse,
            responses={**_IMAGE_RESPONSE, **error_responses(404, 503)})
async def get_image(image_id: str, state: StateDep) -> FileResponse:
    """Return the original file of an archive image."""
    record, _ = await run_in_threadpool(_locate, state, image_id)
    media_type = mimetypes.guess_type(record.file_name)[0] or "application/octet-stream"
    return FileResponse(record.path, media_type=media_type, filename=record.file_name)
