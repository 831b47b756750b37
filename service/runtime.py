"""Process state of the service: loaded once in the app lifespan, shared by all requests."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from service.batching import BatcherConfig
from service.core.config import Settings
from service.core.metrics import ServiceMetrics
from service.encoding import QueryEncoder
from service.jobs import JobManager
from service.snapshots import SnapshotHolder
from service.thumbnails import ThumbnailCache

logger = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics
    encoder: object
    queries: QueryEncoder
    snapshots: SnapshotHolder
    jobs: JobManager
    thumbnails: ThumbnailCache

    @property
    def ready(self) -> bool:
        return self.snapshots.current is not None


def start_runtime(settings: Settings, metrics: ServiceMetrics) -> ServiceState:
    """Start the inference thread, and load the encoder and the last published snapshot on it.

    A missing snapshot leaves the service running but not ready, so that an admin
    rebuild can create the first one. A snapshot built with another encoder
    raises, because its vectors would not be comparable to the queries.
    """
    from model.encoder import load_encoder

    batching = BatcherConfig(max_batch_size=settings.batch_max_size,
                             max_wait_s=settings.batch_max_wait_ms / 1000.0,
                             max_pending=settings.max_pending_queries)
    queries = QueryEncoder(batching, metrics)
    try:
        encoder = queries.load(lambda: load_encoder(settings.model, device=settings.device))
        snapshot = queries.run_blocking(lambda: open_serving_snapshot(settings, encoder))
    except BaseException:
        queries.close()
        raise
    holder = SnapshotHolder()
    state = ServiceState(
        settings=settings, metrics=metrics, encoder=encoder, queries=queries, snapshots=holder,
        jobs=JobManager(lambda kind, progress, should_stop: run_build(settings, encoder, kind, progress, should_stop),
                        lambda report: publish_snapshot(state, report), metrics),
        thumbnails=ThumbnailCache(settings.thumbnail_cache_items),
    )
    if snapshot is None:
        logger.warning("no snapshot published under %s; the service is not ready until an admin rebuild",
                       settings.snapshot_dir)
    else:
        holder.swap(snapshot)
        _set_index_gauges(state, snapshot)
    return state


def stop_runtime(state: ServiceState) -> None:
    state.jobs.shutdown()
    state.queries.close()
    state.snapshots.close()


def open_serving_snapshot(settings: Settings, encoder) -> Optional[object]:
    """Open the last published snapshot under the snapshot directory, or return None when there is none."""
    from index.errors import SnapshotNotFound
    from index.snapshot import open_current_snapshot

    try:
        return open_current_snapshot(settings.snapshot_dir, encoder_fingerprint=encoder.fingerprint,
                                     embed_dim=encoder.embed_dim)
    except SnapshotNotFound:
        return None


def run_build(settings: Settings, encoder, kind: str, progress, should_stop):
    """Build (``rebuild``) or extend (``update``) a snapshot of the archive and publish it on disk."""
    from index.build import BuildConfig, build_snapshot, update_snapshot

    config = BuildConfig(archive_dir=settings.archive_dir, snapshot_root=settings.snapshot_dir,
                         caption_files=list(settings.caption_files), batch_size=settings.build_batch_size,
                         num_workers=settings.build_workers)
    builder = build_snapshot if kind == "rebuild" else update_snapshot
    return builder(config, encoder, progress=progress, should_stop=should_stop)


def publish_snapshot(state: ServiceState, report) -> None:
    """Open the snapshot a job published and swap it into serving."""
    from index.snapshot import open_snapshot

    snapshot = open_snapshot(report.path, encoder_fingerprint=state.encoder.fingerprint,
                             embed_dim=state.encoder.embed_dim)
    state.snapshots.swap(snapshot)
    state.metrics.snapshot_swaps.inc()
    _set_index_gauges(state, snapshot)


def _set_index_gauges(state: ServiceState, snapshot) -> None:
    state.metrics.index_images.set(snapshot.image_count)
    state.metrics.index_captions.set(snapshot.caption_count)
