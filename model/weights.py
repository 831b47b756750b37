"""Reading backbone weight files: SHA-256 checks and state-dict unwrapping."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import nn

from model.errors import BackboneError, CheckpointMismatch, WeightHashMismatch

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20
_WRAPPER_KEYS = ("state_dict", "model", "module")
_PREFIXES = ("module.", "model.")


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    """Check a weight file against its pinned SHA-256 and return the digest."""
    if not path.is_file():
        raise BackboneError(f"weight file not found: {path}")
    actual = sha256_file(path)
    if actual != expected:
        raise WeightHashMismatch(
            f"weight file {path} has SHA-256 {actual}, expected {expected}; "
            "reinstall the package that ships it"
        )
    logger.info("verified SHA-256 of %s (%s)", path.name, actual[:12])
    return actual


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint file and unwrap it to a flat state dict.

    Accepts a plain state dict, ``{"state_dict": ...}``-style wrappers and keys
    prefixed by ``module.`` (DistributedDataParallel) or ``model.``.
    """
    if not path.is_file():
        raise BackboneError(f"checkpoint file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for bad files
        raise BackboneError(f"cannot read checkpoint {path}: {error}") from error
    state = _unwrap(loaded)
    if not state:
        raise BackboneError(f"checkpoint {path} contains no tensors")
    return _strip_prefixes(state)


def _unwrap(loaded: object) -> dict[str, torch.Tensor]:
    while isinstance(loaded, Mapping):
        wrapped = next((loaded[key] for key in _WRAPPER_KEYS if isinstance(loaded.get(key), Mapping)), None)
        if wrapped is None:
            break
        loaded = wrapped
    if not isinstance(loaded, Mapping):
        raise BackboneError(f"checkpoint contains a {type(loaded).__name__}, expected a state dict")
    return {key: value for key, value in loaded.items() if isinstance(value, torch.Tensor)}


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], *, source: str, target: str,
              ignore: Optional[set[str]] = None) -> None:
    """Load ``state`` strictly into ``module``; on any mismatch raise naming both sides."""
    ignore = ignore or set()
    state = {key: value for key, value in state.items() if key not in ignore}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatch(
            f"checkpoint {source} does not match backbone {target}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, "
            f"{len(wrong_shape)} shape mismatches {wrong_shape[:5]}"
        )
    module.load_state_dict(state, strict=True)
