"""SQLite metadata store of a snapshot.

Tables (``row`` is the FAISS label and the row in the vector files):

* ``images(row, image_id, relative_path, file_name, size_bytes, sha256,
  width, height, label, geo_json)``
* ``captions(row, text)``
* ``caption_images(caption_row, image_row)``: which images a caption describes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

SCHEMA = """
CREATE TABLE images (
    row INTEGER PRIMARY KEY,
    image_id TEXT NOT NULL UNIQUE,
    relative_path TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    label TEXT,
    geo_json TEXT
);
CREATE TABLE captions (row INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE caption_images (
    caption_row INTEGER NOT NULL REFERENCES captions(row),
    image_row INTEGER NOT NULL REFERENCES images(row),
    PRIMARY KEY (caption_row, image_row)
);
CREATE INDEX caption_images_by_image ON caption_images(image_row);
CREATE INDEX images_by_sha256 ON images(sha256);
"""


@dataclass
class ImageRow:
    """One image as stored; ``row`` is its FAISS label."""

    row: int
    image_id: str
    relative_path: str
    file_name: str
    size_bytes: int
    sha256: str
    width: int
    height: int
    label: Optional[str]
    geo: Optional[dict[str, Any]]


def write_store(path: Path, images: Sequence[ImageRow], captions: Sequence[tuple[str, list[int]]]) -> None:
    """Write a new store; ``captions`` contains (text, image rows) in caption-row order."""
    connection = sqlite3.connect(path)
    try:
        connection.executescript(SCHEMA)
        connection.executemany(
            "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(image.row, image.image_id, image.relative_path, image.file_name, image.size_bytes, image.sha256,
              image.width, image.height, image.label, json.dumps(image.geo) if image.geo else None)
             for image in images])
        connection.executemany("INSERT INTO captions VALUES (?, ?)", [(row, text) for row, (text, _) in enumerate(captions)])
        connection.executemany(
            "INSERT INTO caption_images VALUES (?, ?)",
            [(row, image_row) for row, (_, image_rows) in enumerate(captions) for image_row in image_rows])
        connection.commit()
    finally:
        connection.close()


class MetadataStore:
    """Read-only access to a store, safe to share between threads."""

    def __init__(self, path: Path):
        uri = f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1"
        self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection.execute(sql, args).fetchall()

    def image_ids(self) -> list[str]:
        """Return every image id in row order."""
        return [row[0] for row in self._query("SELECT image_id FROM images ORDER BY row")]

    def all_images(self) -> list[ImageRow]:
        return [_image_row(values) for values in self._query("SELECT * FROM images ORDER BY row")]

    def image_by_id(self, image_id: str) -> Optional[ImageRow]:
        rows = self._query("SELECT * FROM images WHERE image_id = ?", (image_id,))
        return _image_row(rows[0]) if rows else None

    def captions_of_image(self, image_row: int) -> list[str]:
        rows = self._query(
            "SELECT c.text FROM caption_images ci JOIN captions c ON c.row = ci.caption_row "
            "WHERE ci.image_row = ? ORDER BY c.row", (image_row,))
        return [row[0] for row in rows]

    def caption(self, caption_row: int) -> Optional[tuple[str, list[str]]]:
        """Return (text, image ids) of one caption, or None."""
        rows = self._query("SELECT text FROM captions WHERE row = ?", (caption_row,))
        if not rows:
            return None
        owners = self._query(
            "SELECT i.image_id FROM caption_images ci JOIN images i ON i.row = ci.image_row "
            "WHERE ci.caption_row = ? ORDER BY i.row", (caption_row,))
        return rows[0][0], [owner[0] for owner in owners]

    def caption_texts(self) -> list[str]:
        return [row[0] for row in self._query("SELECT text FROM captions ORDER BY row")]

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def _image_row(values: tuple) -> ImageRow:
    *fields, geo_json = values
    return ImageRow(*fields, geo=json.loads(geo_json) if geo_json else None)
