"""Resumable embedding shards.

Each shard is a pair ``shard-NNNNNN.npy`` (``[embedded, dim]`` float32) and
``shard-NNNNNN.json`` (one entry per file: sha256, vector row or null, width,
height, geo, error). The JSON is renamed into place after the vectors, so a
shard without its JSON was cut short and is ignored. Entries are keyed by
content hash, so a resumed build reuses them whatever the file is now called.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

logger = logging.getLogger(__name__)

_SHARD_NAME = re.compile(r"^shard-(\d{6})\.json$")


@dataclass
class EmbeddedFile:
    """The embedding result of one file content; ``vector`` is None when decoding failed."""

    sha256: str
    vector: Optional[np.ndarray]  # [dim]
    width: int = 0
    height: int = 0
    geo: Optional[dict[str, Any]] = None
    error: Optional[str] = None


class ShardStore:
    """A folder of shards for one encoder and decode configuration."""

    def __init__(self, folder: Path, embed_dim: int):
        self.folder = Path(folder)
        self.embed_dim = embed_dim
        self._next = 0

    def load(self) -> dict[str, EmbeddedFile]:
        """Return every complete shard's entries by sha256."""
        found: dict[str, EmbeddedFile] = {}
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.iterdir()):
            match = _SHARD_NAME.match(path.name)
            if not match:
                continue
            self._next = max(self._next, int(match.group(1)) + 1)
            for entry in self._read_shard(path):
                found[entry.sha256] = entry
        if found:
            logger.info("resuming from %d embedded files in %s", len(found), self.folder)
        return found

    def _read_shard(self, path: Path) -> list[EmbeddedFile]:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            vectors = np.load(path.with_suffix(".npy"))  # [embedded, dim]
        except (OSError, ValueError) as error:
            logger.warning("ignoring unreadable shard %s: %s", path, error)
            return []
        if vectors.ndim != 2 or vectors.shape[1] != self.embed_dim:
            logger.warning("ignoring shard %s with vectors of shape %s", path, vectors.shape)
            return []
        result = []
        for entry in entries:
            row = entry.pop("row")
            result.append(EmbeddedFile(vector=None if row is None else vectors[row], **entry))
        return result

    def write(self, files: list[EmbeddedFile]) -> None:
        """Write one shard; it counts only once its JSON has been renamed into place."""
        if not files:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = self.folder / f"shard-{self._next:06d}"
        self._next += 1
        embedded = [item for item in files if item.vector is not None]
        vectors = np.stack([item.vector for item in embedded]) if embedded else np.zeros((0, self.embed_dim), np.float32)
        entries, row = [], 0
        for item in files:
            entries.append({"sha256": item.sha256, "row": None if item.vector is None else row,
                            "width": item.width, "height": item.height, "geo": item.geo, "error": item.error})
            row += item.vector is not None
        _write_atomically(stem.with_suffix(".npy"), lambda handle: np.save(handle, vectors.astype(np.float32)))
        _write_atomically(stem.with_suffix(".json"), lambda handle: handle.write(json.dumps(entries).encode("utf-8")))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _write_atomically(path: Path, write) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
