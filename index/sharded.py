"""Embedding one shard of an archive, for jobs spread over many workers.

Every worker scans the whole archive and keeps the files whose relative path
hashes to its shard (``shard_of_path``), so the split needs no coordination
and gives the same assignment on every machine. A worker is either a torchrun
rank (``RANK`` and ``WORLD_SIZE`` from the environment) or any process given
``shard`` and ``num_shards``, such as a SLURM array task or a Kubernetes
indexed job. Each shard resumes from its own chunks after a kill and writes
its result to the shared work folder (see ``index.shard_files``). Then
``index.merge.merge_shards`` builds and publishes the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from index.build import BuildProgress, ProgressCallback, _Counter, _embed_tasks, _hash_files
from index.decode import DecodeConfig
from index.embed import EmbedOptions, embed_files
from index.errors import IndexConfigError
from index.publish import build_lock
from index.scan import ArchiveFile, scan_archive
from index.shard_files import mark_incomplete, shard_folder_name, write_shard_output
from index.shards import EmbeddedFile, ShardStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSpec:
    """The shard a worker embeds: ``index`` in ``0 .. count - 1`` of ``count`` shards."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise IndexConfigError(f"the shard count must be >= 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise IndexConfigError(f"the shard index must be in 0..{self.count - 1}, got {self.index}")


def resolve_shard_spec(shard: Optional[int], num_shards: Optional[int],
                       environ: Optional[Mapping[str, str]] = None) -> ShardSpec:
    """Return the explicit shard, else the torchrun rank from ``RANK`` and ``WORLD_SIZE``."""
    if (shard is None) != (num_shards is None):
        raise IndexConfigError("give both the shard index and the shard count, or neither under torchrun")
    if shard is not None:
        return ShardSpec(shard, num_shards)
    environ = os.environ if environ is None else environ
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        raise IndexConfigError("no shard given: pass --shard and --num-shards, or start the job with torchrun, "
                               "which sets RANK and WORLD_SIZE")
    try:
        return ShardSpec(int(environ["RANK"]), int(environ["WORLD_SIZE"]))
    except ValueError as error:
        raise IndexConfigError(f"RANK and WORLD_SIZE must be integers: {error}") from error


def shard_of_path(relative_path: str, num_shards: int) -> int:
    """Return the shard of an archive-relative path: the first 8 bytes of its SHA-256, modulo ``num_shards``."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


@dataclass
class ShardJobConfig:
    """Settings of one shard's embedding run; ``chunk_size`` is images per resumable chunk."""

    archive_dir: Path
    work_dir: Path
    batch_size: int = 32
    num_workers: int = 2
    chunk_size: int = 1024
    hash_workers: int = 4
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        self.archive_dir = Path(self.archive_dir)
        self.work_dir = Path(self.work_dir)
        for name in ("batch_size", "chunk_size", "hash_workers"):
            if getattr(self, name) < 1:
                raise IndexConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise IndexConfigError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass
class ShardReport:
    spec: ShardSpec
    path: Path  # the shard's output folder
    file_count: int  # image files assigned to this shard that were hashed
    embedded: int  # distinct contents embedded by this run
    reused: int  # distinct contents taken from chunks of an earlier, killed run
    skipped: list[tuple[str, str]]
    seconds: float = 0.0


def embed_shard(config: ShardJobConfig, encoder, spec: ShardSpec, *, progress: ProgressCallback = None,
                should_stop: Optional[Callable[[], bool]] = None) -> ShardReport:
    """Embed the files of shard ``spec`` and write its output folder under ``config.work_dir``."""
    started = time.perf_counter()
    notify = progress or (lambda _: None)
    folder = config.work_dir / shard_folder_name(spec.index, spec.count)
    folder.mkdir(parents=True, exist_ok=True)
    with build_lock(folder, folder_kind="embedding shard folder"):
        mark_incomplete(folder)
        scan = scan_archive(config.archive_dir)
        mine = [item for item in scan.files if shard_of_path(item.relative_path, spec.count) == spec.index]
        notify(BuildProgress("scan", len(mine), len(scan.files)))
        hashed, skipped = _hash_files(mine, config.hash_workers, notify)
        skipped += [entry for entry in scan.skipped if shard_of_path(entry[0], spec.count) == spec.index]
        chunks = ShardStore(folder / _chunk_folder_name(encoder, config.decode), encoder.embed_dim)
        known = chunks.load()
        tasks = _embed_tasks(hashed, known)
        counter = _Counter(notify, "embed_images", len(tasks))
        options = EmbedOptions(config.batch_size, config.num_workers, config.chunk_size, config.decode)
        fresh = embed_files(tasks, encoder, chunks, options, on_batch=counter.add, should_stop=should_stop)
        root = config.archive_dir.resolve()
        manifest, vectors = _shard_manifest(spec, encoder, config, hashed, {**known, **fresh}, skipped)
        manifest["annotation_files"] = sorted(path.resolve().relative_to(root).as_posix()
                                              for path in scan.annotation_files)
        write_shard_output(folder, manifest, vectors)
        chunks.remove()
    skipped.sort()
    report = ShardReport(spec, folder, len(hashed), sum(1 for item in fresh.values() if item.vector is not None),
                         len({digest for _, digest in hashed} & set(known)), skipped, time.perf_counter() - started)
    logger.info("shard %d of %d: %d files (%d embedded, %d reused), %d skipped, %.1f s, written to %s",
                spec.index, spec.count, report.file_count, report.embedded, report.reused, len(skipped),
                report.seconds, folder)
    return report


def _chunk_folder_name(encoder, decode: DecodeConfig) -> str:
    """Return a chunk folder name per encoder and decode setting, so a resumed run never mixes them."""
    key = json.dumps({"encoder": encoder.fingerprint, "decode": asdict(decode)}, sort_keys=True)
    return f"chunks-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _shard_manifest(spec: ShardSpec, encoder, config: ShardJobConfig, hashed: list[tuple[ArchiveFile, str]],
                    results: dict[str, EmbeddedFile], skipped: list) -> tuple[dict, np.ndarray]:
    """Return the shard manifest and its ``[distinct contents, dim]`` vectors."""
    rows: dict[str, int] = {}
    vectors, files = [], []
    for item, digest in hashed:
        result = results[digest]
        if result.vector is not None and digest not in rows:
            rows[digest] = len(vectors)
            vectors.append(result.vector)
        files.append({"relative_path": item.relative_path, "size_bytes": item.size_bytes, "sha256": digest,
                      "row": rows.get(digest), "width": result.width, "height": result.height,
                      "geo": result.geo, "error": result.error})
    manifest = {
        "shard": spec.index,
        "num_shards": spec.count,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "encoder": {"source": encoder.source, "fingerprint": encoder.fingerprint, "identity": encoder.identity},
        "embed_dim": int(encoder.embed_dim),
        "decode": {key: list(value) if isinstance(value, tuple) else value
                   for key, value in asdict(config.decode).items()},
        "archive_dir": str(config.archive_dir.resolve()),
        "files": files,
        "skipped": sorted(skipped),
    }
    stacked = np.stack(vectors) if vectors else np.zeros((0, encoder.embed_dim), np.float32)
    return manifest, stacked
