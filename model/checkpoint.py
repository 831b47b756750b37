"""Adapter-only checkpoints: ``adapter_config.json`` beside ``adapter_model.safetensors``.

The config records the adapter options, the backbone spec and identity, and
the SHA-256 of the weights file. Loading rebuilds the backbone from the spec,
checks that its identity matches, and loads the adapter weights strictly.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from safetensors.torch import load_file, save_file

from model.backbone import BackboneSpec, build_backbone, identity_fingerprint
from model.config import HarMAConfig
from model.errors import CheckpointMismatch, HarMAError
from model.harma import HarMAModel
from model.weights import sha256_file

logger = logging.getLogger(__name__)

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT_VERSION = 1


def save_adapters(model: HarMAModel, directory: Path, spec: BackboneSpec, *,
                  extra: Optional[dict[str, Any]] = None) -> Path:
    """Write the trained weights and their config; files are replaced atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_NAME
    _atomic_write(weights_path, lambda tmp: save_file(model.adapter_state_dict(), str(tmp)))
    trainable, total = model.parameter_counts()
    config = {
        "format_version": FORMAT_VERSION,
        "harma": model.config.to_dict(),
        "use_adapters": model.use_adapters,
        "backbone_spec": spec.to_dict(),
        "backbone_identity": model.identity,
        "backbone_fingerprint": identity_fingerprint(model.identity),
        "weights_sha256": sha256_file(weights_path),
        "trainable_parameters": trainable,
        "total_parameters": total,
        **(extra or {}),
    }
    text = json.dumps(config, indent=2, sort_keys=True)
    _atomic_write(directory / CONFIG_NAME, lambda tmp: tmp.write_text(text))
    logger.info("saved adapters to %s (%d tensors)", directory, len(model.adapter_state_dict()))
    return directory


def read_adapter_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise HarMAError(f"not an adapter checkpoint: {path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HarMAError(f"invalid JSON in {path}: {error}") from error


def load_adapters(directory: Path, *, spec_override: Optional[BackboneSpec] = None) -> HarMAModel:
    """Rebuild the backbone named in the checkpoint and load the trained weights."""
    directory = Path(directory)
    config = read_adapter_config(directory)
    weights_path = directory / WEIGHTS_NAME
    if not weights_path.is_file():
        raise HarMAError(f"adapter weights missing: {weights_path}")
    digest = sha256_file(weights_path)
    if digest != config.get("weights_sha256"):
        raise CheckpointMismatch(
            f"{weights_path} has SHA-256 {digest} but {CONFIG_NAME} records {config.get('weights_sha256')}"
        )
    spec = spec_override or BackboneSpec.from_dict(config["backbone_spec"])
    backbone = build_backbone(spec)
    recorded = config["backbone_identity"]
    if backbone.identity != recorded:
        raise CheckpointMismatch(
            f"checkpoint {directory} was trained on backbone {recorded.get('name')} "
            f"(fingerprint {identity_fingerprint(recorded)}) but the backbone built is "
            f"{backbone.identity.get('name')} (fingerprint {backbone.fingerprint})"
        )
    model = HarMAModel(backbone, HarMAConfig.from_dict(config["harma"]), use_adapters=config["use_adapters"])
    load_trained_state(model, load_file(str(weights_path)), source=str(directory))
    model.checkpoint_sha256 = digest
    return model


def load_trained_state(model: HarMAModel, state: dict, *, source: str) -> None:
    expected = model.adapter_state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointMismatch(
            f"adapter weights in {source} do not fit the model of backbone {model.identity.get('name')}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {shapes[:5]}"
        )
    model.load_state_dict(state, strict=False)


def _atomic_write(path: Path, write) -> None:
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp creates owner-only files; checkpoints are shared read-only
    try:
        write(tmp)
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
