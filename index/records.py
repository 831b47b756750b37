"""Records returned by snapshot lookups."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class ImageRecord:
    """One indexed image.

    ``geo`` is None for images without georeferencing, else
    ``{"bounds": [min_x, min_y, max_x, max_y], "crs": "EPSG:<code>" | None}``
    in the units of that CRS.
    """

    id: str
    path: Path
    file_name: str
    size_bytes: int
    sha256: str
    width: int
    height: int
    label: Optional[str] = None
    geo: Optional[dict[str, Any]] = None
    captions: list[str] = field(default_factory=list)


@dataclass
class CaptionRecord:
    """One distinct caption text and the ids of the images it describes."""

    id: int
    text: str
    image_ids: list[str] = field(default_factory=list)
