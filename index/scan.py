"""Recursive archive walk that lists image files and the files it skips.

The walk enters each folder once, by device and inode, so a symlink loop or
a second link to a visited folder is listed as skipped instead of followed. Names that are not valid UTF-8 are
skipped, because their ids and metadata must be UTF-8 text.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from index.errors import ArchiveError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
# Annotation files are read as caption sources, so they are not reported as skipped.
ANNOTATION_FILE_NAMES = frozenset({"annotations.json"})


@dataclass(frozen=True)
class ArchiveFile:
    """An image file found in the archive."""

    relative_path: str  # POSIX, relative to the archive folder
    path: Path  # absolute
    size_bytes: int


@dataclass
class ScanResult:
    files: list[ArchiveFile]
    skipped: list[tuple[str, str]]  # (relative path, reason)
    annotation_files: list[Path]


def scan_archive(archive_dir: Path) -> ScanResult:
    """Walk ``archive_dir`` recursively and sort image files by relative path."""
    root = Path(archive_dir)
    if not root.is_dir():
        raise ArchiveError(f"archive folder not found or not a folder: {root}")
    result = ScanResult(files=[], skipped=[], annotation_files=[])
    root_stat = root.stat()
    _walk(root.resolve(), "", result, {(root_stat.st_dev, root_stat.st_ino)})
    result.files.sort(key=lambda item: item.relative_path)
    result.skipped.sort()
    logger.info("scanned %s: %d image files, %d skipped, %d annotation files",
                root, len(result.files), len(result.skipped), len(result.annotation_files))
    return result


def _walk(folder: Path, prefix: str, result: ScanResult, seen: set) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        result.skipped.append((prefix or ".", f"folder cannot be listed: {error.strerror}"))
        return
    for entry in entries:
        relative = _readable_name(entry.name, prefix)
        if relative is None:
            shown = entry.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            result.skipped.append((prefix + shown, "file name is not valid UTF-8"))
            continue
        try:
            info = entry.stat(follow_symlinks=True)
        except OSError as error:
            result.skipped.append((relative, _stat_failure(entry, error)))
            continue
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in seen:
                result.skipped.append((relative, "folder already visited (symlink loop or second link)"))
                continue
            seen.add(key)
            _walk(Path(entry.path), relative + "/", result, seen)
        elif stat.S_ISREG(info.st_mode):
            _add_file(entry, relative, info.st_size, result)
        else:
            result.skipped.append((relative, "not a regular file"))


def _readable_name(name: str, prefix: str) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return prefix + name


def _stat_failure(entry: os.DirEntry, error: OSError) -> str:
    if entry.is_symlink():
        return f"broken symlink or symlink loop: {error.strerror}"
    return f"cannot be read: {error.strerror}"


def _add_file(entry: os.DirEntry, relative: str, size: int, result: ScanResult) -> None:
    path = Path(entry.path)
    if entry.name in ANNOTATION_FILE_NAMES:
        result.annotation_files.append(path)
    elif path.suffix.lower() not in IMAGE_SUFFIXES:
        result.skipped.append((relative, f"not an image file type ({path.suffix or 'no suffix'})"))
    elif size == 0:
        result.skipped.append((relative, "empty file (0 bytes)"))
    else:
        result.files.append(ArchiveFile(relative, path.absolute(), size))
