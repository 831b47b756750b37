"""Snapshot folder layout and atomic publishing.

Layout under a snapshot root::

    CURRENT                 the published version's name (switched by rename)
    snapshots/<version>/    complete snapshots, never changed after publishing
    .staging/<version>/     a snapshot being written; invisible to readers
    .work/                  resumable embedding shards
    .lock                   held by the one build that may run at a time

Publishing fsyncs every file and the staging folder, renames the folder into
``snapshots/`` and then replaces ``CURRENT`` by renaming a fsynced temporary
file over it. A crash at any step leaves ``CURRENT`` naming the previous
complete snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from index.errors import IndexPackageError, SnapshotNotFound

logger = logging.getLogger(__name__)

POINTER_NAME = "CURRENT"
SNAPSHOTS_DIR = "snapshots"
STAGING_DIR = ".staging"
WORK_DIR = ".work"


class BuildLocked(IndexPackageError):
    """Another build holds the lock of this snapshot root."""


def new_version() -> str:
    """Return a sortable, unique version name such as ``20240131T120000.123456Z-3f9a1c``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


def staging_path(root: Path, version: str) -> Path:
    path = Path(root) / STAGING_DIR / version
    path.mkdir(parents=True, exist_ok=False)
    return path


@contextlib.contextmanager
def build_lock(root: Path, *, folder_kind: str = "snapshot root") -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``root`` for one build; ``folder_kind`` names it in errors."""
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BuildLocked(f"another build is running on {folder_kind} {root}; wait for it to finish") from error
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fsync_tree(folder: Path) -> None:
    """fsync every file in ``folder`` and then the folder itself."""
    for path in sorted(Path(folder).iterdir()):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def publish(root: Path, staging: Path) -> Path:
    """Move a complete staging folder into place and switch ``CURRENT`` to it."""
    root = Path(root)
    fsync_tree(staging)
    published_dir = root / SNAPSHOTS_DIR
    published_dir.mkdir(exist_ok=True)
    target = published_dir / staging.name
    os.rename(staging, target)
    fsync_dir(published_dir)
    fsync_dir(staging.parent)
    write_pointer(root, staging.name)
    logger.info("published snapshot %s", target)
    return target


def write_pointer(root: Path, version: str) -> None:
    temporary = Path(root) / f".{POINTER_NAME}.{secrets.token_hex(4)}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(version + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, Path(root) / POINTER_NAME)
    fsync_dir(Path(root))


def current_version(root: Path) -> str:
    """Return the published version name; raise SnapshotNotFound if none."""
    pointer = Path(root) / POINTER_NAME
    try:
        version = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError as error:
        raise SnapshotNotFound(f"no published snapshot under {root}: {POINTER_NAME} is missing; run 'harma-index build' first") from error
    if not version or "/" in version or version.startswith("."):
        raise SnapshotNotFound(f"{pointer} contains an invalid version name {version!r}")
    return version


def current_snapshot_dir(root: Path) -> Path:
    path = Path(root) / SNAPSHOTS_DIR / current_version(root)
    if not path.is_dir():
        raise SnapshotNotFound(f"{POINTER_NAME} names {path.name} but {path} does not exist")
    return path


def remove_staging(root: Path) -> None:
    """Delete leftovers of failed builds; call only while holding the build lock."""
    shutil.rmtree(Path(root) / STAGING_DIR, ignore_errors=True)


def prune_snapshots(root: Path, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest snapshots, never the current one."""
    folder = Path(root) / SNAPSHOTS_DIR
    if not folder.is_dir():
        return []
    current: Optional[str] = None
    with contextlib.suppress(SnapshotNotFound):
        current = current_version(root)
    versions = sorted((path.name for path in folder.iterdir() if path.is_dir()), reverse=True)
    removed = [version for version in versions[keep:] if version != current]
    for version in removed:
        shutil.rmtree(folder / version, ignore_errors=True)
    if removed:
        logger.info("removed %d old snapshots: %s", len(removed), ", ".join(removed))
    return removed
