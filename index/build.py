"""Full and incremental snapshot builds.

``build_snapshot`` embeds the whole archive. ``update_snapshot`` reuses the
vectors of the current snapshot for every file whose SHA-256 is unchanged,
so it embeds only new or changed files. Both publish a new snapshot
atomically and resume from embedding shards left by a killed build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

from index.captions import CaptionSources, build_corpus, read_caption_sources
from index.decode import DecodeConfig, hash_file
from index.errors import ArchiveError, BuildCancelled, IndexConfigError, SnapshotMismatch, SnapshotNotFound
from index.embed import EmbedOptions, EmbedTask, embed_files
from index.faiss_index import IndexSettings
from index.ids import image_id_from_path
from index.publish import WORK_DIR, build_lock, new_version, prune_snapshots, publish, remove_staging, staging_path
from index.scan import ArchiveFile, scan_archive
from index.shards import EmbeddedFile, ShardStore
from index.snapshot import Snapshot, open_current_snapshot
from index.store import ImageRow
from index.writer import write_snapshot_files

logger = logging.getLogger(__name__)


@dataclass
class BuildConfig:
    """Settings of a snapshot build.

    ``exact_max``: largest image or caption count that gets an exact (flat)
    index when ``index_type`` is ``"auto"``; larger sets get IVF.
    ``shard_size``: images per resumable embedding shard.
    ``keep_snapshots``: published snapshots kept on disk, the current included.
    """

    archive_dir: Path
    snapshot_root: Path
    caption_files: list[Path] = field(default_factory=list)
    batch_size: int = 32
    num_workers: int = 2
    exact_max: int = 200_000
    index_type: str = "auto"  # flat | ivf | ivf-ondisk | hnsw | auto
    ivf_nlist: Optional[int] = None
    ivf_nprobe: Optional[int] = None
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    use_gpu: Optional[bool] = None  # None: GPU FAISS when present
    shard_size: int = 1024
    keep_snapshots: int = 3
    hash_workers: int = 4
    text_batch_size: int = 256
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        self.archive_dir = Path(self.archive_dir)
        self.snapshot_root = Path(self.snapshot_root)
        self.caption_files = [Path(path) for path in self.caption_files]
        for name in ("batch_size", "shard_size", "keep_snapshots", "hash_workers", "text_batch_size"):
            if getattr(self, name) < 1:
                raise IndexConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise IndexConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        self.index_settings()  # validates the index fields

    def index_settings(self) -> IndexSettings:
        return IndexSettings(index_type=self.index_type, exact_max=self.exact_max, ivf_nlist=self.ivf_nlist,
                             ivf_nprobe=self.ivf_nprobe, hnsw_m=self.hnsw_m, hnsw_ef_search=self.hnsw_ef_search,
                             use_gpu=self.use_gpu)


@dataclass
class BuildProgress:
    stage: str  # scan | hash | embed_images | embed_captions | write | publish
    done: int
    total: int


@dataclass
class BuildReport:
    version: str
    path: Path
    image_count: int
    caption_count: int
    skipped: list[tuple[str, str]]  # (archive-relative path, reason)
    reused: int  # images whose vectors came from the previous snapshot or resume shards
    embedded: int  # distinct file contents embedded by this run (identical files count once)
    seconds: float = 0.0


ProgressCallback = Optional[Callable[[BuildProgress], None]]


def build_snapshot(config: BuildConfig, encoder, *, progress: ProgressCallback = None,
                   should_stop: Optional[Callable[[], bool]] = None) -> BuildReport:
    """Embed the whole archive and caption corpus and publish a new snapshot."""
    return _run(config, encoder, incremental=False, progress=progress, should_stop=should_stop)


def update_snapshot(config: BuildConfig, encoder, *, progress: ProgressCallback = None,
                    should_stop: Optional[Callable[[], bool]] = None) -> BuildReport:
    """Publish a new snapshot that re-embeds only new and changed files.

    Raises SnapshotMismatch when the current snapshot was built with another
    encoder or decode setting; run ``build_snapshot`` then.
    """
    return _run(config, encoder, incremental=True, progress=progress, should_stop=should_stop)


def _run(config: BuildConfig, encoder, *, incremental: bool, progress: ProgressCallback,
         should_stop: Optional[Callable[[], bool]]) -> BuildReport:
    started = time.perf_counter()
    notify = progress or (lambda _: None)
    with build_lock(config.snapshot_root):
        remove_staging(config.snapshot_root)
        previous, previous_captions = _previous_vectors(config, encoder) if incremental else ({}, {})
        scan = scan_archive(config.archive_dir)
        notify(BuildProgress("scan", len(scan.files), len(scan.files)))
        hashed, skipped = _hash_files(scan.files, config.hash_workers, notify)
        skipped += scan.skipped
        sources = _read_sources(scan.annotation_files, config, skipped)
        shards = ShardStore(_work_folder(config, encoder), encoder.embed_dim)
        known = {**previous, **shards.load()}
        tasks = _embed_tasks(hashed, known)
        counter = _Counter(notify, "embed_images", len(tasks))
        options = EmbedOptions(config.batch_size, config.num_workers, config.shard_size, config.decode)
        fresh = embed_files(tasks, encoder, shards, options, on_batch=counter.add, should_stop=should_stop)
        images, vectors, reused = _assemble_images(hashed, {**known, **fresh}, sources, fresh, skipped)
        captions, caption_vectors = _embed_corpus(images, sources, encoder, config, previous_captions,
                                                  notify, should_stop)
        version = new_version()
        staging = staging_path(config.snapshot_root, version)
        notify(BuildProgress("write", 0, 1))
        extra = {"archive_dir": str(config.archive_dir.resolve()), "skipped_count": len(skipped),
                 "caption_files": [str(path) for path in config.caption_files],
                 "build": {"embedded": len(tasks), "reused": reused, "incremental": incremental}}
        write_snapshot_files(staging, version=version, encoder=encoder, images=images, image_vectors=vectors,
                             captions=captions, caption_vectors=caption_vectors,
                             settings=config.index_settings(), extra_manifest=extra, decode=config.decode)
        notify(BuildProgress("publish", 0, 1))
        path = publish(config.snapshot_root, staging)
        shards.remove()
        prune_snapshots(config.snapshot_root, config.keep_snapshots)
        notify(BuildProgress("publish", 1, 1))
    skipped.sort()
    report = BuildReport(version, path, len(images), len(captions), skipped, reused,
                         sum(1 for item in fresh.values() if item.vector is not None), time.perf_counter() - started)
    logger.info("snapshot %s: %d images (%d embedded, %d reused), %d captions, %d skipped, %.1f s",
                version, report.image_count, report.embedded, report.reused, report.caption_count,
                len(skipped), report.seconds)
    return report


class _Counter:
    def __init__(self, notify: Callable[[BuildProgress], None], stage: str, total: int):
        self.notify, self.stage, self.total, self.done = notify, stage, total, 0
        notify(BuildProgress(stage, 0, total))

    def add(self, count: int) -> None:
        self.done += count
        self.notify(BuildProgress(self.stage, self.done, self.total))


def _work_folder(config: BuildConfig, encoder) -> Path:
    """Return the shard folder of this encoder and decode setting, so resumes never mix them."""
    key = json.dumps({"encoder": encoder.fingerprint, "decode": asdict(config.decode)}, sort_keys=True)
    return config.snapshot_root / WORK_DIR / f"embed-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _previous_vectors(config: BuildConfig, encoder) -> tuple[dict[str, EmbeddedFile], dict[str, np.ndarray]]:
    """Return the current snapshot's image vectors by sha256 and caption vectors by text."""
    try:
        snapshot = open_current_snapshot(config.snapshot_root, encoder_fingerprint=encoder.fingerprint,
                                         embed_dim=encoder.embed_dim)
    except SnapshotNotFound:
        logger.info("no current snapshot under %s; the update embeds every image", config.snapshot_root)
        return {}, {}
    with snapshot:
        _check_decode(snapshot, config.decode)
        captions = snapshot.caption_vectors()  # [captions, dim]
        return _vectors_of(snapshot), dict(zip(snapshot.caption_texts(), captions))


def _check_decode(snapshot: Snapshot, decode: DecodeConfig) -> None:
    built = snapshot.manifest.get("decode", {})
    expected = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(decode).items()}
    if built != expected:
        raise SnapshotMismatch(
            f"snapshot {snapshot.version} was decoded with {built}, but this update uses {expected}; run a full build")


def _vectors_of(snapshot: Snapshot) -> dict[str, EmbeddedFile]:
    found = {}
    for row in snapshot.image_rows():
        vector = snapshot.image_vector(row.image_id)
        found[row.sha256] = EmbeddedFile(row.sha256, vector, row.width, row.height, row.geo)
    return found


def _hash_files(files: list[ArchiveFile], workers: int, notify) -> tuple[list[tuple[ArchiveFile, str]], list]:
    hashed, skipped = [], []

    def hash_one(item: ArchiveFile) -> Optional[str]:
        try:
            return hash_file(item.path)
        except OSError as error:
            skipped.append((item.relative_path, f"cannot be read: {error.strerror or error}"))
            return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = pool.map(hash_one, files)
        for done, (item, digest) in enumerate(tqdm(zip(files, digests), total=len(files), desc="hash files",
                                                   unit="file", dynamic_ncols=True), start=1):
            if digest is not None:
                hashed.append((item, digest))
            if done % 256 == 0 or done == len(files):
                notify(BuildProgress("hash", done, len(files)))
    return hashed, skipped


def _read_sources(annotation_files: list[Path], config: BuildConfig, skipped: list) -> CaptionSources:
    """Read annotation files found in the archive (a bad one is skipped) and the configured caption files."""
    sources = CaptionSources(by_image={}, unattached=[])
    root = config.archive_dir.resolve()
    for path in annotation_files:
        try:
            found = read_caption_sources([path])
        except ArchiveError as error:
            skipped.append((path.resolve().relative_to(root).as_posix(), f"invalid annotation file: {error}"))
            continue
        _merge(sources, found)
    _merge(sources, read_caption_sources(config.caption_files))
    return sources


def _merge(into: CaptionSources, found: CaptionSources) -> None:
    for key, annotation in found.by_image.items():
        target = into.by_image.setdefault(key, annotation.__class__())
        target.captions.extend(annotation.captions)
        target.label = target.label or annotation.label
    into.unattached.extend(found.unattached)


def _embed_tasks(hashed: list[tuple[ArchiveFile, str]], known: dict[str, EmbeddedFile]) -> list[EmbedTask]:
    tasks, queued = [], set()
    for item, digest in hashed:
        if digest not in known and digest not in queued:
            queued.add(digest)
            tasks.append(EmbedTask(item.path, digest))
    return tasks


def _assemble_images(hashed, results: dict[str, EmbeddedFile], sources: CaptionSources,
                     fresh: dict[str, EmbeddedFile], skipped: list) -> tuple[list[ImageRow], np.ndarray, int]:
    """Return image rows in archive-path order, their ``[images, dim]`` vectors and the reused count."""
    images, vectors, reused = [], [], 0
    for item, digest in hashed:
        result = results[digest]
        if result.vector is None:
            skipped.append((item.relative_path, result.error or "not embedded"))
            continue
        reused += digest not in fresh
        annotation = sources.by_image.get(str(item.path.resolve()))
        images.append(ImageRow(
            row=len(images), image_id=image_id_from_path(item.relative_path), relative_path=item.relative_path,
            file_name=item.path.name, size_bytes=item.size_bytes, sha256=digest, width=result.width,
            height=result.height, label=annotation.label if annotation else None, geo=result.geo))
        vectors.append(result.vector)
    dim = len(vectors[0]) if vectors else 0
    return images, (np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)), reused


def _embed_corpus(images: list[ImageRow], sources: CaptionSources, encoder, config: BuildConfig,
                  previous: dict[str, np.ndarray], notify,
                  should_stop: Optional[Callable[[], bool]]) -> tuple[list[tuple[str, list[int]]], np.ndarray]:
    """Deduplicate and embed captions; return (text, image rows) pairs and ``[captions, dim]`` vectors."""
    root = config.archive_dir.resolve()
    by_path = {str((root / image.relative_path).resolve()): image for image in images}
    attached: dict[str, list[str]] = {}
    unattached = list(sources.unattached)
    for path, annotation in sources.by_image.items():
        image = by_path.get(path)
        if image is None:
            unattached.extend(annotation.captions)  # the caption is still searchable text
        else:
            attached[image.image_id] = annotation.captions
    corpus = build_corpus(attached, unattached)
    row_of = {image.image_id: image.row for image in images}
    captions = [(entry.text, [row_of[image_id] for image_id in entry.image_ids]) for entry in corpus]
    missing = [entry.text for entry in corpus if entry.text not in previous]
    fresh = _encode_texts(missing, encoder, config.text_batch_size, notify, should_stop)
    vectors = {**previous, **dict(zip(missing, fresh))}
    stacked = np.stack([vectors[text] for text, _ in captions]) if captions else np.zeros((0, encoder.embed_dim), np.float32)
    return captions, stacked.astype(np.float32)


def _encode_texts(texts: list[str], encoder, batch_size: int, notify,
                  should_stop: Optional[Callable[[], bool]]) -> np.ndarray:
    counter = _Counter(notify, "embed_captions", len(texts))
    chunks = []
    with tqdm(total=len(texts), desc="embed captions", unit="caption", dynamic_ncols=True) as bar:
        for start in range(0, len(texts), batch_size):
            if should_stop is not None and should_stop():
                raise BuildCancelled("build stopped while embedding captions; image shards are kept for the next run")
            batch = texts[start:start + batch_size]
            chunks.append(encoder.encode_texts(batch))  # [batch, dim]
            bar.update(len(batch))
            counter.add(len(batch))
    return np.concatenate(chunks) if chunks else np.zeros((0, encoder.embed_dim), np.float32)
