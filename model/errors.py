"""Exceptions raised by the model package.

Callers catch ``HarMAError`` for any failure of this package. The subclasses
name which kind of input was wrong.
"""


class HarMAError(Exception):
    """Base class of every error raised by the model package."""


class ConfigError(HarMAError, ValueError):
    """A configuration value is invalid."""


class BackboneError(HarMAError):
    """A backbone cannot be built or its weights cannot be loaded."""


class WeightHashMismatch(BackboneError):
    """A weight file's SHA-256 differs from the pinned value."""


class CheckpointMismatch(HarMAError):
    """A checkpoint does not belong to the backbone it is loaded into."""


class InjectionError(HarMAError):
    """Adapters could not be attached to the expected modules."""


class DataError(HarMAError):
    """An annotation file or image cannot be read."""
