"""Read access to a published snapshot.

A snapshot folder contains ``manifest.json``, ``metadata.sqlite``, the FAISS
indexes ``images.faiss`` and ``captions.faiss`` (for ``ivf-ondisk`` also their
memory-mapped lists ``images.ivfdata`` and ``captions.ivfdata``), and the same
vectors as ``images.npy`` and ``captions.npy`` (``[count, embed_dim]`` float32, row =
FAISS label). A ``Snapshot`` is immutable and safe to search from many
threads: search parameters travel with each call as FAISS SearchParameters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

import faiss
import numpy as np

from index.errors import IndexConfigError, IndexPackageError, SnapshotCorrupt, SnapshotMismatch
from index.faiss_index import IndexParams, search_parameters
from index.ivf_files import index_file_names, read_index_file
from index.publish import current_snapshot_dir
from index.records import CaptionRecord, ImageRecord
from index.store import ImageRow, MetadataStore

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
SNAPSHOT_FILES = ("manifest.json", "metadata.sqlite", "images.faiss", "captions.faiss", "images.npy", "captions.npy")

__all__ = ["IndexPackageError", "Snapshot", "SnapshotMismatch", "open_current_snapshot", "open_snapshot"]


class Snapshot:
    """One loaded snapshot: two FAISS indexes, their vectors and the metadata store."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self.version: str = self.manifest["version"]
        self.embed_dim: int = int(self.manifest["embed_dim"])
        self.image_count: int = int(self.manifest["image_count"])
        self.caption_count: int = int(self.manifest["caption_count"])
        self.archive_dir = Path(self.manifest["archive_dir"])
        self._image_params = IndexParams(**self.manifest["images_index"])
        self._caption_params = IndexParams(**self.manifest["captions_index"])
        self._image_index = _read_index(self.path, "images", self._image_params, self.embed_dim)
        self._caption_index = _read_index(self.path, "captions", self._caption_params, self.embed_dim)
        self._image_vectors = np.load(self.path / "images.npy", mmap_mode="r")  # [images, dim]
        self._store = MetadataStore(self.path / "metadata.sqlite")
        self._image_ids = self._store.image_ids()
        self._row_by_id = {image_id: row for row, image_id in enumerate(self._image_ids)}
        if len(self._image_ids) != self.image_count or self._image_vectors.shape != (self.image_count, self.embed_dim):
            self._store.close()
            raise SnapshotCorrupt(f"snapshot {self.path}: metadata or vectors disagree with the manifest counts")
        logger.info("loaded snapshot %s: %d images (%s), %d captions (%s), dimension %d",
                    self.version, self.image_count, self._image_params.index_type,
                    self.caption_count, self._caption_params.index_type, self.embed_dim)

    def search_images(self, queries: np.ndarray, k: int, *, nprobe: Optional[int] = None,
                      ef_search: Optional[int] = None) -> list[list[tuple[str, float]]]:
        """Return, per query, up to ``k`` (image_id, cosine score) pairs, best first."""
        params = search_parameters(self._image_params, nprobe=nprobe, ef_search=ef_search)
        hits = self._search(self._image_index, queries, k, params)
        return [[(self._image_ids[row], score) for row, score in row_hits] for row_hits in hits]

    def search_captions(self, queries: np.ndarray, k: int, *, nprobe: Optional[int] = None,
                        ef_search: Optional[int] = None) -> list[list[tuple[int, float]]]:
        """Return, per query, up to ``k`` (caption_id, cosine score) pairs, best first."""
        params = search_parameters(self._caption_params, nprobe=nprobe, ef_search=ef_search)
        return self._search(self._caption_index, queries, k, params)

    def _search(self, index: faiss.Index, queries: np.ndarray, k: int,
                params: Optional[faiss.SearchParameters]) -> list[list[tuple[int, float]]]:
        queries = self._check_queries(queries)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise IndexConfigError(f"k must be a positive integer, got {k!r}")
        if index.ntotal == 0:
            return [[] for _ in range(len(queries))]
        k = int(min(k, index.ntotal))
        scores, labels = index.search(queries, k, params=params)  # [queries, k] each
        return [[(int(label), float(score)) for label, score in zip(label_row, score_row) if label >= 0]
                for label_row, score_row in zip(labels, scores)]

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        array = np.asarray(queries, dtype=np.float32)
        if array.ndim == 1:
            array = array[np.newaxis, :]  # [1, dim]
        if array.ndim != 2 or array.shape[1] != self.embed_dim:
            raise IndexConfigError(f"queries must have shape [n, {self.embed_dim}], got {np.shape(queries)}")
        if not np.all(np.isfinite(array)):
            raise IndexConfigError("queries contain NaN or infinite values")
        return np.ascontiguousarray(array)

    def get_image(self, image_id: str) -> Optional[ImageRecord]:
        """Return the metadata and captions of one image, or None for an unknown id."""
        row = self._store.image_by_id(image_id)
        if row is None:
            return None
        return ImageRecord(
            id=row.image_id, path=self.archive_dir / row.relative_path, file_name=row.file_name,
            size_bytes=row.size_bytes, sha256=row.sha256, width=row.width, height=row.height,
            label=row.label, geo=row.geo, captions=self._store.captions_of_image(row.row))

    def get_caption(self, caption_id: int) -> Optional[CaptionRecord]:
        """Return one caption and the ids of the images it describes, or None."""
        if isinstance(caption_id, bool) or not isinstance(caption_id, (int, np.integer)):
            return None
        found = self._store.caption(int(caption_id))
        if found is None:
            return None
        text, image_ids = found
        return CaptionRecord(id=int(caption_id), text=text, image_ids=image_ids)

    def image_vector(self, image_id: str) -> Optional[np.ndarray]:
        """Return a copy of the stored ``[embed_dim]`` embedding of one image, or None."""
        row = self._row_by_id.get(image_id)
        return None if row is None else np.array(self._image_vectors[row], dtype=np.float32)

    def image_ids(self) -> list[str]:
        """Return every image id in row order."""
        return list(self._image_ids)

    def image_rows(self) -> list[ImageRow]:
        """Return the stored metadata of every image in row order."""
        return self._store.all_images()

    def caption_texts(self) -> list[str]:
        """Return every caption text in caption-id order."""
        return self._store.caption_texts()

    def caption_vectors(self) -> np.ndarray:
        """Return the ``[captions, embed_dim]`` caption embeddings."""
        return np.load(self.path / "captions.npy")

    def check_encoder(self, *, encoder_fingerprint: Optional[str] = None, embed_dim: Optional[int] = None) -> None:
        """Raise SnapshotMismatch unless the snapshot was built with this encoder."""
        built_with = self.manifest["encoder"]["fingerprint"]
        if encoder_fingerprint is not None and encoder_fingerprint != built_with:
            raise SnapshotMismatch(
                f"snapshot {self.version} was built with encoder fingerprint {built_with} "
                f"({self.manifest['encoder'].get('source')}), but the loaded encoder has {encoder_fingerprint}; "
                "rebuild the snapshot with this encoder or load the encoder it was built with")
        if embed_dim is not None and int(embed_dim) != self.embed_dim:
            raise SnapshotMismatch(
                f"snapshot {self.version} has embedding dimension {self.embed_dim}, but the encoder produces {embed_dim}")

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def open_snapshot(path: Path, *, encoder_fingerprint: Optional[str] = None,
                  embed_dim: Optional[int] = None) -> Snapshot:
    """Load the snapshot folder ``path`` and check it against the encoder."""
    snapshot = Snapshot(path)
    try:
        snapshot.check_encoder(encoder_fingerprint=encoder_fingerprint, embed_dim=embed_dim)
    except SnapshotMismatch:
        snapshot.close()
        raise
    return snapshot


def open_current_snapshot(root: Path, *, encoder_fingerprint: Optional[str] = None,
                          embed_dim: Optional[int] = None) -> Snapshot:
    """Load the snapshot that the ``CURRENT`` pointer under ``root`` names.

    Raises SnapshotNotFound when nothing is published and SnapshotMismatch
    when the snapshot was built with another encoder or dimension.
    """
    return open_snapshot(current_snapshot_dir(Path(root)), encoder_fingerprint=encoder_fingerprint,
                         embed_dim=embed_dim)


def _read_manifest(path: Path) -> dict:
    missing = [name for name in SNAPSHOT_FILES if not (path / name).is_file()]
    if missing:
        raise SnapshotCorrupt(f"snapshot {path} is missing {', '.join(missing)}")
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SnapshotCorrupt(f"snapshot {path}: {MANIFEST_NAME} cannot be read: {error}") from error
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotCorrupt(
            f"snapshot {path} has format_version {manifest.get('format_version')!r}; this code reads {FORMAT_VERSION}")
    return manifest


def _read_index(folder: Path, name: str, params: IndexParams, dim: int) -> faiss.Index:
    missing = [file for file in index_file_names(name, params) if not (folder / file).is_file()]
    if missing:
        raise SnapshotCorrupt(f"snapshot {folder} is missing {', '.join(missing)}")
    index = read_index_file(folder, name, params)
    path, count = folder / f"{name}.faiss", params.count
    if index.ntotal != count or index.d != dim:
        raise SnapshotCorrupt(f"{path} contains {index.ntotal} vectors of dimension {index.d}, "
                              f"expected {count} of dimension {dim}")
    return index
