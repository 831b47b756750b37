"""Merge the outputs of embedding shards into one published snapshot.

The merge checks that every shard of the run is complete and that all were
embedded with the same encoder, decode settings and archive. It orders the
images by archive path, as a single-process build does, embeds the caption
corpus, fills the image index shard by shard with FAISS (see
``index.ivf_files``) and publishes the snapshot atomically.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from index.build import (BuildConfig, BuildProgress, BuildReport, ProgressCallback, _assemble_images,
                         _embed_corpus, _read_sources)
from index.decode import DecodeConfig
from index.errors import IndexConfigError, ShardsIncomplete, SnapshotMismatch
from index.publish import build_lock, new_version, prune_snapshots, publish, remove_staging, staging_path
from index.scan import ArchiveFile
from index.shard_files import ShardOutput, read_shard_outputs, shard_folder_name
from index.shards import EmbeddedFile
from index.writer import write_snapshot_files

logger = logging.getLogger(__name__)


@dataclass
class MergeConfig:
    """Settings of a merge; the index fields mean what they mean in ``BuildConfig``.

    ``num_shards``: shard count of the run to merge (default: from the folder names).
    ``archive_dir``: archive folder to read annotation files from and record in the snapshot
    (default: the one the shards recorded).
    ``remove_shards``: delete the shard folders after publishing.
    """

    work_dir: Path
    snapshot_root: Path
    num_shards: Optional[int] = None
    archive_dir: Optional[Path] = None
    caption_files: list[Path] = field(default_factory=list)
    exact_max: int = 200_000
    index_type: str = "auto"  # flat | ivf | ivf-ondisk | hnsw | auto
    ivf_nlist: Optional[int] = None
    ivf_nprobe: Optional[int] = None
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    use_gpu: Optional[bool] = None
    keep_snapshots: int = 3
    text_batch_size: int = 256
    remove_shards: bool = False

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        self.snapshot_root = Path(self.snapshot_root)
        self.archive_dir = None if self.archive_dir is None else Path(self.archive_dir)
        self.caption_files = [Path(path) for path in self.caption_files]
        if self.num_shards is not None and self.num_shards < 1:
            raise IndexConfigError(f"num_shards must be >= 1, got {self.num_shards}")
        self.build_config(Path("."), DecodeConfig())  # validates the index and output fields

    def build_config(self, archive_dir: Path, decode: DecodeConfig) -> BuildConfig:
        return BuildConfig(archive_dir=archive_dir, snapshot_root=self.snapshot_root,
                           caption_files=self.caption_files, exact_max=self.exact_max, index_type=self.index_type,
                           ivf_nlist=self.ivf_nlist, ivf_nprobe=self.ivf_nprobe, hnsw_m=self.hnsw_m,
                           hnsw_ef_search=self.hnsw_ef_search, use_gpu=self.use_gpu,
                           keep_snapshots=self.keep_snapshots, text_batch_size=self.text_batch_size, decode=decode)


def merge_shards(config: MergeConfig, encoder, *, progress: ProgressCallback = None,
                 should_stop: Optional[Callable[[], bool]] = None) -> BuildReport:
    """Build a snapshot from complete embedding shards and publish it.

    Raises ShardsIncomplete naming missing or incomplete shards, and
    SnapshotMismatch when a shard was embedded with another encoder.
    """
    started = time.perf_counter()
    notify = progress or (lambda _: None)
    with build_lock(config.snapshot_root):
        remove_staging(config.snapshot_root)
        shards = read_shard_outputs(config.work_dir, config.num_shards)
        reference = _check_agreement(shards, encoder)
        archive_dir = config.archive_dir or Path(reference["archive_dir"])
        build = config.build_config(archive_dir, _decode_config(reference["decode"]))
        # TODO: stream shard vectors into a memory-mapped images.npy; today the
        # merge keeps the whole [images, dim] matrix in RAM, a few copies at its peak.
        hashed, results, shard_of = _collect_files(shards, archive_dir.resolve())
        skipped = sorted({tuple(entry) for shard in shards for entry in shard.manifest["skipped"]})
        annotation_files = sorted({name for shard in shards for name in shard.manifest["annotation_files"]})
        sources = _read_sources([archive_dir / name for name in annotation_files], build, skipped)
        images, vectors, _ = _assemble_images(hashed, results, sources, results, skipped)
        parts = _rows_per_shard(images, shard_of, len(shards))
        captions, caption_vectors = _embed_corpus(images, sources, encoder, build, {}, notify, should_stop)
        version = new_version()
        staging = staging_path(config.snapshot_root, version)
        notify(BuildProgress("write", 0, 1))
        extra = {"archive_dir": str(archive_dir.resolve()), "skipped_count": len(skipped),
                 "caption_files": [str(path) for path in config.caption_files],
                 "build": {"embedded": len(results), "reused": 0, "incremental": False, "shards": len(shards)}}
        write_snapshot_files(staging, version=version, encoder=encoder, images=images, image_vectors=vectors,
                             captions=captions, caption_vectors=caption_vectors, settings=build.index_settings(),
                             extra_manifest=extra, decode=build.decode, image_parts=parts)
        notify(BuildProgress("publish", 0, 1))
        path = publish(config.snapshot_root, staging)
        prune_snapshots(config.snapshot_root, config.keep_snapshots)
        notify(BuildProgress("publish", 1, 1))
    if config.remove_shards:
        for shard in shards:
            shutil.rmtree(config.work_dir / shard_folder_name(shard.shard, shard.num_shards), ignore_errors=True)
    embedded = sum(1 for item in results.values() if item.vector is not None)
    report = BuildReport(version, path, len(images), len(captions), sorted(skipped), 0, embedded,
                         time.perf_counter() - started)
    logger.info("merged %d shards into snapshot %s: %d images, %d captions, %d skipped, %.1f s",
                len(shards), version, report.image_count, report.caption_count, len(skipped), report.seconds)
    return report


def _check_agreement(shards: list[ShardOutput], encoder) -> dict:
    """Return shard 0's manifest after checking that every shard matches it and the encoder."""
    reference = shards[0].manifest
    for shard in shards:
        for key in ("embed_dim", "decode", "archive_dir"):
            if shard.manifest[key] != reference[key]:
                raise ShardsIncomplete(f"shard {shard.shard} has {key} {shard.manifest[key]!r} but shard 0 has "
                                       f"{reference[key]!r}; run every shard with the same settings")
        fingerprint = shard.manifest["encoder"]["fingerprint"]
        if fingerprint != encoder.fingerprint:
            raise SnapshotMismatch(
                f"shard {shard.shard} was embedded with encoder fingerprint {fingerprint} "
                f"({shard.manifest['encoder'].get('source')}), but the merge loaded {encoder.fingerprint}; "
                "merge with the encoder the shards used")
    return reference


def _decode_config(recorded: dict) -> DecodeConfig:
    return DecodeConfig(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in recorded.items()})


def _collect_files(shards: list[ShardOutput], archive_root: Path):
    """Return (file, sha256) pairs in archive-path order, results by sha256 and each path's shard."""
    hashed, results, shard_of = [], {}, {}
    for shard in shards:
        for entry in shard.files:
            row = entry["row"]
            vector = None if row is None else np.array(shard.vectors[row], dtype=np.float32)  # [dim]
            results.setdefault(entry["sha256"], EmbeddedFile(entry["sha256"], vector, entry["width"],
                                                             entry["height"], entry["geo"], entry["error"]))
            path = entry["relative_path"]
            if path in shard_of:
                raise ShardsIncomplete(f"{path} appears in shards {shard_of[path]} and {shard.shard}")
            shard_of[path] = shard.shard
            hashed.append((ArchiveFile(path, archive_root / path, entry["size_bytes"]), entry["sha256"]))
    hashed.sort(key=lambda pair: pair[0].relative_path)
    return hashed, results, shard_of


def _rows_per_shard(images, shard_of: dict[str, int], count: int) -> list[np.ndarray]:
    rows: list[list[int]] = [[] for _ in range(count)]
    for image in images:
        rows[shard_of[image.relative_path]].append(image.row)
    return [np.array(part, dtype=np.int64) for part in rows]
