"""Write a snapshot's FAISS index files, filling IVF lists one part at a time.

A part is a set of rows, such as the rows one embedding shard produced. For
IVF the coarse quantizer is trained once on a sample of all vectors. Each part
then fills its own copy of the empty trained index with ``add_with_ids``, the
ids being the global rows. FAISS combines the copies: ``IndexIVF.merge_from``
for in-memory lists, and ``faiss.contrib.ondisk.merge_ondisk`` for
``ivf-ondisk``, which writes the lists to ``<name>.ivfdata`` beside
``<name>.faiss``. Flat and HNSW indexes are built from the rows in order.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

from index.errors import IndexConfigError, SnapshotCorrupt
from index.faiss_index import IVF_TYPES, IndexParams, build_faiss_index, train_ivf

logger = logging.getLogger(__name__)

ONDISK_SUFFIX = ".ivfdata"
# ONDISK_SAME_DIR finds the .ivfdata file beside the .faiss file wherever the
# snapshot folder was moved after writing. READ_ONLY maps it without write access.
ONDISK_READ_FLAGS = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY
# FAISS starts 32 prefetch threads per search by default. On page-cached lists
# they raised the p50 of `benchmarks/index_bench.py memory` at 10,000 vectors
# from 0.055 to 2.2 ms (2 cores). Without them a search faults in its own pages.
# NOTE: on cold network or spinning storage prefetching may pay off; not measured.
ONDISK_PREFETCH_THREADS = 0


def index_file_names(name: str, params: IndexParams) -> list[str]:
    """Return the file names that the index ``name`` occupies in a snapshot folder."""
    names = [f"{name}.faiss"]
    if params.index_type == "ivf-ondisk":
        names.append(f"{name}{ONDISK_SUFFIX}")
    return names


def write_index_files(folder: Path, name: str, vectors: np.ndarray, params: IndexParams, *,
                      parts: Optional[Sequence[np.ndarray]] = None, use_gpu: Optional[bool] = None) -> None:
    """Build the index of ``vectors`` ``[count, dim]`` and write it as ``<name>.faiss`` in ``folder``.

    ``parts`` lists the rows of each part (together every row exactly once).
    Without it the whole matrix is one part.
    """
    folder = Path(folder)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if params.index_type not in IVF_TYPES:
        faiss.write_index(build_faiss_index(vectors, params, use_gpu=use_gpu), str(folder / f"{name}.faiss"))
        return
    rows_per_part = _check_parts(parts, params.count)
    started = time.perf_counter()
    trained = train_ivf(vectors, params, use_gpu=use_gpu)
    if params.index_type == "ivf":
        empty = faiss.clone_index(trained)  # every part starts from the same empty lists
        for rows in rows_per_part:
            trained.merge_from(_filled_part(empty, vectors, rows), 0)
    else:
        _merge_parts_on_disk(trained, vectors, rows_per_part, folder, name)
    faiss.write_index(trained, str(folder / f"{name}.faiss"))
    logger.info("built %s index %s from %d parts: %d vectors, %.1f s", params.index_type, name,
                len(rows_per_part), trained.ntotal, time.perf_counter() - started)


def _check_parts(parts: Optional[Sequence[np.ndarray]], count: int) -> list[np.ndarray]:
    if parts is None:
        return [np.arange(count, dtype=np.int64)]
    rows_per_part = [np.asarray(rows, dtype=np.int64) for rows in parts]
    covered = np.sort(np.concatenate(rows_per_part)) if rows_per_part else np.zeros(0, np.int64)
    if not np.array_equal(covered, np.arange(count)):
        raise IndexConfigError(f"index parts must cover rows 0..{count - 1} exactly once")
    return rows_per_part


def _filled_part(trained: faiss.Index, vectors: np.ndarray, rows: np.ndarray) -> faiss.Index:
    part = faiss.clone_index(trained)
    if len(rows):
        part.add_with_ids(vectors[rows], rows)  # [part rows, dim], labels = global rows
    return part


def _merge_parts_on_disk(trained: faiss.Index, vectors: np.ndarray, rows_per_part: list[np.ndarray],
                         folder: Path, name: str) -> None:
    """Write each filled part to a temporary file and merge their lists into ``<name>.ivfdata``."""
    part_dir = folder / f".{name}-parts"
    part_dir.mkdir()
    try:
        part_files = []
        for number, rows in enumerate(rows_per_part):
            path = part_dir / f"part-{number:05d}.faiss"
            faiss.write_index(_filled_part(trained, vectors, rows), str(path))
            part_files.append(str(path))
        # merge_ondisk reads the parts memory-mapped, so their lists need not fit in RAM together.
        merge_ondisk(trained, part_files, str(folder / f"{name}{ONDISK_SUFFIX}"))
    finally:
        shutil.rmtree(part_dir, ignore_errors=True)


def read_index_file(folder: Path, name: str, params: IndexParams) -> faiss.Index:
    """Open ``<name>.faiss``; the lists of an ``ivf-ondisk`` index are memory-mapped, not loaded."""
    path = Path(folder) / f"{name}.faiss"
    if params.index_type != "ivf-ondisk":
        return faiss.read_index(str(path))
    try:
        index = faiss.read_index(str(path), ONDISK_READ_FLAGS)
    except RuntimeError as error:
        raise SnapshotCorrupt(f"{path} cannot be opened with its on-disk lists: {error}") from error
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    if isinstance(lists, faiss.OnDiskInvertedLists):
        lists.prefetch_nthread = ONDISK_PREFETCH_THREADS
    return index
