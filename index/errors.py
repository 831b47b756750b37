"""Exceptions raised by the index package.

Callers catch ``IndexPackageError`` for any failure of this package; the
subclasses say which input or step failed.
"""


class IndexPackageError(Exception):
    """Base class of every error raised by the index package."""


class IndexConfigError(IndexPackageError, ValueError):
    """A build or search setting is invalid."""


class ArchiveError(IndexPackageError):
    """The archive folder or a caption file cannot be read."""


class SnapshotNotFound(IndexPackageError, FileNotFoundError):
    """No published snapshot exists where one was expected."""


class SnapshotCorrupt(IndexPackageError):
    """A snapshot directory is missing files or contains inconsistent ones."""


class SnapshotMismatch(IndexPackageError):
    """A snapshot was built with another encoder or embedding dimension."""


class BuildCancelled(IndexPackageError):
    """A build stopped because ``should_stop`` returned True.

    Embedding shards written so far are kept, so the next build resumes.
    """


class ShardsIncomplete(IndexPackageError):
    """Embedding shards needed by a merge are missing, incomplete or disagree with each other."""
