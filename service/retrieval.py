"""Query execution: encode, search the serving snapshot and build the response models.

Searches and metadata lookups run on the inference thread, right after the
encode, under a snapshot lease, so a concurrent swap never closes the
snapshot they use.
"""

from __future__ import annotations

import logging
import time
from typing import Optional
from urllib.parse import quote

import numpy as np
from service.core.errors import InvalidRequest, NotFound
from service.runtime import ServiceState
from service.schemas.search import (
    CaptionResult, ImageRef, ImageSearchResponse, SceneResult, TextSearchResponse,
)

logger = logging.getLogger(__name__)


def resolve_k(state: ServiceState, k: Optional[int]) -> int:
    """Return the requested k, the default when absent; raise 422 above the limit."""
    limit = state.settings.max_k
    if k is None:
        return min(state.settings.default_k, limit)
    if k > limit:
        raise InvalidRequest(f"k={k} exceeds the limit of {limit} results per query", code="k_too_large")
    return k


def check_text(state: ServiceState, text: str) -> str:
    """Return the query text; raise 422 when it is blank or longer than the limit."""
    limit = state.settings.max_text_chars
    if len(text) > limit:
        raise InvalidRequest(f"text of {len(text)} characters exceeds the limit of {limit} characters",
                             code="text_too_long")
    if not text.strip():
        raise InvalidRequest("text is blank; send at least one non-space character", code="text_blank")
    return text


def image_urls(image_id: str) -> tuple[str, str]:
    base = f"/v1/images/{quote(image_id, safe='')}"
    return base, f"{base}/thumbnail"


def scene_result(snapshot, image_id: str, score: float) -> Optional[SceneResult]:
    record = snapshot.get_image(image_id)
    if record is None:
        return None
    image_url, thumbnail_url = image_urls(record.id)
    return SceneResult(id=record.id, score=float(score), file_name=record.file_name, image_url=image_url,
                       thumbnail_url=thumbnail_url, label=record.label, geo=record.geo,
                       captions=list(record.captions))


def _search_scenes(state: ServiceState, snapshot, vector: np.ndarray, k: int, min_score: Optional[float],
                   exclude: Optional[str] = None) -> list[SceneResult]:
    settings = state.settings
    wanted = k + 1 if exclude is not None else k
    started = time.perf_counter()
    hits = snapshot.search_images(vector[None, :], wanted, nprobe=settings.search_nprobe,  # [1, dim]
                                  ef_search=settings.search_ef_search)[0]
    state.metrics.search_latency.labels(index="images").observe(time.perf_counter() - started)
    results = []
    for image_id, score in hits:
        if image_id == exclude or (min_score is not None and score < min_score):
            continue
        scene = scene_result(snapshot, image_id, score)
        if scene is not None:
            results.append(scene)
    return results[:k]


def _search_captions(state: ServiceState, snapshot, vector: np.ndarray, k: int,
                     min_score: Optional[float]) -> list[CaptionResult]:
    settings = state.settings
    started = time.perf_counter()
    hits = snapshot.search_captions(vector[None, :], k, nprobe=settings.search_nprobe,  # [1, dim]
                                    ef_search=settings.search_ef_search)[0]
    state.metrics.search_latency.labels(index="captions").observe(time.perf_counter() - started)
    results = []
    for caption_id, score in hits:
        if min_score is not None and score < min_score:
            continue
        caption = snapshot.get_caption(caption_id)
        if caption is None:
            continue
        images = []
        for image_id in caption.image_ids:
            record = snapshot.get_image(image_id)
            if record is not None:
                image_url, thumbnail_url = image_urls(record.id)
                images.append(ImageRef(id=record.id, file_name=record.file_name, image_url=image_url,
                                       thumbnail_url=thumbnail_url))
        results.append(CaptionResult(id=int(caption.id), text=caption.text, score=float(score), images=images))
    return results


async def search_by_text(state: ServiceState, text: str, k: int, min_score: Optional[float]) -> TextSearchResponse:
    def search(vector: np.ndarray) -> TextSearchResponse:  # vector: [dim]
        with state.snapshots.lease() as snapshot:
            scenes = _search_scenes(state, snapshot, vector, k, min_score)
            return TextSearchResponse(snapshot_version=snapshot.version, results=scenes)

    return await state.queries.encode_text(text, then=search)


async def search_by_image(state: ServiceState, pixels, k: int, min_score: Optional[float]) -> ImageSearchResponse:
    """Encode one preprocessed ``[3, size, size]`` image and return its captions and similar scenes."""
    def search(vector: np.ndarray) -> ImageSearchResponse:  # vector: [dim]
        with state.snapshots.lease() as snapshot:
            return ImageSearchResponse(
                snapshot_version=snapshot.version,
                captions=_search_captions(state, snapshot, vector, k, min_score),
                scenes=_search_scenes(state, snapshot, vector, k, min_score),
            )

    return await state.queries.encode_image(pixels, then=search)


async def search_by_image_id(state: ServiceState, image_id: str, k: int,
                             min_score: Optional[float]) -> ImageSearchResponse:
    def search() -> ImageSearchResponse:
        with state.snapshots.lease() as snapshot:
            vector = snapshot.image_vector(image_id)
            if vector is None:
                raise NotFound(f"image {image_id!r} not found in snapshot {snapshot.version}", code="image_not_found")
            vector = np.asarray(vector, dtype=np.float32).reshape(-1)  # [dim]
            return ImageSearchResponse(
                snapshot_version=snapshot.version,
                query_image_id=image_id,
                captions=_search_captions(state, snapshot, vector, k, min_score),
                scenes=_search_scenes(state, snapshot, vector, k, min_score, exclude=image_id),
            )

    return await state.queries.run(search)
