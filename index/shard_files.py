"""On-disk output of one embedding shard and the checks a merge makes on it.

Shard ``i`` of ``N`` writes the folder ``shard-<i>-of-<N>`` (five digits
each) under the work folder:

* ``vectors.npy``: ``[vectors, embed_dim]`` float32, one row per distinct
  file content that decoded;
* ``shard.json``: written last, by rename, so its presence marks the shard
  complete. It stores the encoder identity, the decode settings, the archive
  folder, one entry per file of the shard (relative path, size, sha256,
  vector row or null, width, height, geo, error), the skipped paths and the
  archive's annotation files.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from index.errors import ShardsIncomplete
from index.shards import _write_atomically

logger = logging.getLogger(__name__)

SHARD_FORMAT_VERSION = 1
SHARD_MANIFEST = "shard.json"
SHARD_VECTORS = "vectors.npy"
_FOLDER_NAME = re.compile(r"^shard-(\d{5})-of-(\d{5})$")
_REQUIRED_KEYS = ("shard", "num_shards", "encoder", "embed_dim", "decode", "archive_dir", "files", "skipped",
                  "annotation_files", "vector_count")


def shard_folder_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


@dataclass
class ShardOutput:
    """A complete shard as read back by a merge."""

    shard: int
    num_shards: int
    manifest: dict[str, Any]
    vectors: np.ndarray  # [vectors, dim], memory-mapped

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.manifest["files"]


def write_shard_output(folder: Path, manifest: dict[str, Any], vectors: np.ndarray) -> None:
    """Write the vectors, then the manifest that marks the shard complete."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    document = {**manifest, "format_version": SHARD_FORMAT_VERSION, "vector_count": int(len(vectors))}
    _write_atomically(folder / SHARD_VECTORS, lambda handle: np.save(handle, vectors))
    _write_atomically(folder / SHARD_MANIFEST, lambda handle: handle.write(json.dumps(document).encode("utf-8")))


def mark_incomplete(folder: Path) -> None:
    """Remove the completion mark, so a merge never reads a shard that is being redone."""
    (folder / SHARD_MANIFEST).unlink(missing_ok=True)


def read_shard_outputs(work_dir: Path, num_shards: Optional[int] = None) -> list[ShardOutput]:
    """Read every shard of one run, in shard order.

    Without ``num_shards`` the count comes from the folder names, which must
    agree. Raises ShardsIncomplete naming every missing or incomplete shard.
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise ShardsIncomplete(f"shard work folder not found: {work_dir}")
    num_shards = num_shards or _shard_count(work_dir)
    outputs, problems = [], {}
    for shard in range(num_shards):
        folder = work_dir / shard_folder_name(shard, num_shards)
        try:
            outputs.append(_read_one(folder, shard, num_shards))
        except _Incomplete as problem:
            problems[shard] = str(problem)
    if problems:
        details = "; ".join(f"shard {shard}: {reason}" for shard, reason in problems.items())
        raise ShardsIncomplete(
            f"{len(problems)} of {num_shards} shards missing or incomplete in {work_dir}: "
            f"shard indexes {', '.join(str(shard) for shard in problems)} ({details}); "
            "run those shards again, then merge")
    return outputs


class _Incomplete(Exception):
    pass


def _shard_count(work_dir: Path) -> int:
    counts = {int(match.group(2)) for path in work_dir.iterdir() if (match := _FOLDER_NAME.match(path.name))}
    if not counts:
        raise ShardsIncomplete(f"no shard folders (shard-NNNNN-of-NNNNN) in {work_dir}; run the embedding shards first")
    if len(counts) > 1:
        raise ShardsIncomplete(f"{work_dir} contains shards of runs with {sorted(counts)} shards; "
                               "give the shard count of the run to merge")
    return counts.pop()


def _read_one(folder: Path, shard: int, num_shards: int) -> ShardOutput:
    if not folder.is_dir():
        raise _Incomplete(f"folder {folder.name} not found")
    try:
        manifest = json.loads((folder / SHARD_MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _Incomplete(f"{SHARD_MANIFEST} not written yet (the shard has not finished)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Incomplete(f"{SHARD_MANIFEST} cannot be read: {error}") from None
    if manifest.get("format_version") != SHARD_FORMAT_VERSION:
        raise _Incomplete(f"format_version {manifest.get('format_version')!r}, expected {SHARD_FORMAT_VERSION}")
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise _Incomplete(f"{SHARD_MANIFEST} lacks {', '.join(missing)}")
    if (manifest.get("shard"), manifest.get("num_shards")) != (shard, num_shards):
        raise _Incomplete(f"{SHARD_MANIFEST} names shard {manifest.get('shard')} of {manifest.get('num_shards')}")
    try:
        vectors = np.load(folder / SHARD_VECTORS, mmap_mode="r")  # [vectors, dim]
    except (OSError, ValueError) as error:
        raise _Incomplete(f"{SHARD_VECTORS} cannot be read: {error}") from None
    if vectors.shape != (manifest["vector_count"], manifest["embed_dim"]):
        raise _Incomplete(f"{SHARD_VECTORS} has shape {vectors.shape}, expected "
                          f"{(manifest['vector_count'], manifest['embed_dim'])}")
    return ShardOutput(shard, num_shards, manifest, vectors)
