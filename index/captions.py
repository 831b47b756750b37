"""Caption sources: annotation files, plain-text and JSON-lines corpora.

* ``.json``: an annotation file in either format that ``model.data`` reads
  (list form or the RSITMD/RSICD release form). Image paths are relative to
  the file's folder and are matched to archive images by path.
* ``.txt``: one caption per line, attached to no image.
* ``.jsonl``: one object per line with ``caption`` or ``text`` (a string) or
  ``captions`` (a list of strings), and an optional ``image`` path relative
  to the file's folder.

Identical captions (after collapsing whitespace) become one corpus entry that
keeps the ids of every image it belongs to.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from index.errors import ArchiveError

logger = logging.getLogger(__name__)


@dataclass
class ImageAnnotation:
    label: Optional[str] = None
    captions: list[str] = field(default_factory=list)


@dataclass
class CaptionSources:
    by_image: dict[str, ImageAnnotation]  # absolute resolved image path -> annotation
    unattached: list[str]  # captions that name no image


@dataclass
class CorpusEntry:
    text: str
    image_ids: list[str]


def read_caption_sources(files: Iterable[Path]) -> CaptionSources:
    """Read every caption file; raise ArchiveError naming the first bad file."""
    sources = CaptionSources(by_image={}, unattached=[])
    for path in files:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            _read_annotation_file(path, sources)
        elif suffix == ".jsonl":
            _read_jsonl(path, sources)
        elif suffix == ".txt":
            sources.unattached.extend(line.strip() for line in _read_lines(path) if line.strip())
        else:
            raise ArchiveError(f"unsupported caption file type {suffix!r} for {path}: use .json, .jsonl or .txt")
    return sources


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as error:
        raise ArchiveError(f"caption file not found: {path}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ArchiveError(f"caption file {path} cannot be read as UTF-8 text: {error}") from error


def _attach(sources: CaptionSources, image_path: Path, captions: list[str], label: Optional[str]) -> None:
    entry = sources.by_image.setdefault(str(image_path.resolve()), ImageAnnotation())
    entry.captions.extend(caption for caption in captions if caption.strip())
    if label and entry.label is None:
        entry.label = label


def _read_annotation_file(path: Path, sources: CaptionSources) -> None:
    from model.data.annotations import read_annotations
    from model.errors import DataError

    try:
        records = read_annotations(path)
    except DataError as error:
        raise ArchiveError(str(error)) from error
    for record in records:
        _attach(sources, Path(record.path), list(record.captions), record.label)


def _read_jsonl(path: Path, sources: CaptionSources) -> None:
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ArchiveError(f"{path} line {number} is not valid JSON: {error}") from error
        captions = _jsonl_captions(entry, path, number)
        image = entry.get("image")
        if image is None:
            sources.unattached.extend(captions)
        elif isinstance(image, str) and image:
            _attach(sources, path.parent / image, captions, entry.get("label"))
        else:
            raise ArchiveError(f"{path} line {number}: 'image' must be a non-empty string")


def _jsonl_captions(entry: object, path: Path, number: int) -> list[str]:
    if not isinstance(entry, dict):
        raise ArchiveError(f"{path} line {number}: expected a JSON object")
    for key in ("caption", "text"):
        if isinstance(entry.get(key), str):
            return [entry[key]]
    captions = entry.get("captions")
    if isinstance(captions, list) and all(isinstance(item, str) for item in captions):
        return list(captions)
    raise ArchiveError(f"{path} line {number}: needs 'caption' or 'text' (string) or 'captions' (list of strings)")


def normalize_caption(text: str) -> str:
    """Return the deduplication key of a caption: its words joined by single spaces."""
    return " ".join(text.split())


def build_corpus(image_captions: dict[str, list[str]], unattached: list[str]) -> list[CorpusEntry]:
    """Deduplicate captions; entries are sorted by text so ids are reproducible."""
    owners: dict[str, list[str]] = {}
    for image_id, captions in image_captions.items():
        for caption in captions:
            key = normalize_caption(caption)
            if key:
                image_ids = owners.setdefault(key, [])
                if image_id not in image_ids:
                    image_ids.append(image_id)
    for caption in unattached:
        key = normalize_caption(caption)
        if key:
            owners.setdefault(key, [])
    return [CorpusEntry(text=text, image_ids=sorted(owners[text])) for text in sorted(owners)]
