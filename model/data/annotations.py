"""Readers for the two annotation formats used by remote-sensing caption sets.

* List form (``annotations.json``): one object per image,
  ``{"id", "image", "captions": [...], "split", "label"}``, with ``image``
  relative to the file's folder.
* RSITMD/RSICD release form, one file per split. The train file has one object
  per caption ``{"caption", "image", "image_id", "label_name", "label"}``. The
  val and test files have one object per image ``{"image", "caption": [...]}``.
  Image paths in this form are relative to ``image_root``.

Both return ``ImageRecord`` objects with the captions of each image grouped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from model.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class ImageRecord:
    """One image and its captions."""

    id: str
    path: Path
    captions: list[str] = field(default_factory=list)
    split: Optional[str] = None
    label: Optional[str] = None


def read_annotations(path: Path, *, image_root: Optional[Path] = None, split: Optional[str] = None) -> list[ImageRecord]:
    """Read an annotation file of either format and return its images.

    ``split`` filters list-form files; release-form files carry no split field,
    so their records take the ``split`` given (or None).
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DataError(f"annotation file not found: {path}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"annotation file {path} is not valid JSON: {error}") from error
    if not isinstance(entries, list) or not entries:
        raise DataError(f"annotation file {path} must hold a non-empty JSON list")
    root = Path(image_root) if image_root is not None else path.parent
    first = entries[0]
    if not isinstance(first, dict):
        raise DataError(f"annotation file {path}: entries must be JSON objects")
    if "captions" in first:
        records = _read_list_form(entries, root, path)
        return [r for r in records if split is None or r.split == split]
    if "caption" in first:
        return _read_release_form(entries, root, path, split)
    raise DataError(f"annotation file {path}: entries have neither 'captions' (list form) nor 'caption' (release form)")


def _read_list_form(entries: list, root: Path, source: Path) -> list[ImageRecord]:
    records = []
    for index, entry in enumerate(entries):
        image = _required(entry, "image", source, index)
        captions = entry.get("captions") or []
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise DataError(f"{source} entry {index}: 'captions' must be a list of strings")
        records.append(ImageRecord(
            id=str(entry.get("id") or image),
            path=root / image,
            captions=list(captions),
            split=entry.get("split"),
            label=entry.get("label"),
        ))
    return records


def _read_release_form(entries: list, root: Path, source: Path, split: Optional[str]) -> list[ImageRecord]:
    by_image: dict[str, ImageRecord] = {}
    for index, entry in enumerate(entries):
        image = _required(entry, "image", source, index)
        caption = entry["caption"]
        captions = caption if isinstance(caption, list) else [caption]
        if not all(isinstance(c, str) for c in captions):
            raise DataError(f"{source} entry {index}: 'caption' must be a string or a list of strings")
        record = by_image.get(image)
        if record is None:
            record = ImageRecord(id=str(image), path=root / image, split=split, label=entry.get("label_name"))
            by_image[image] = record
        record.captions.extend(captions)
    return list(by_image.values())


def _required(entry: dict, key: str, source: Path, index: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise DataError(f"{source} entry {index}: missing or empty '{key}'")
    return value
