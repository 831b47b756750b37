"""Configuration dataclasses for HarMA adapters and losses.

Each dataclass validates itself in ``__post_init__`` and names the bad field, so
a bad config file fails before any model is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from model.errors import ConfigError

MMS_TOWERS = ("both", "text")


@dataclass
class HarMAConfig:
    """Shape and placement of the HarMA adapters.

    ``mms_towers="both"`` passes both towers through the shared mini-adapter
    (the published method). ``"text"`` passes only the text tower through it,
    which reproduces the official HarMA code and its released checkpoints.
    """

    bottleneck_dim: int = 128
    num_heads: int = 8
    mms_dim: int = 64
    mms_num_heads: int = 8
    gate_init: float = 0.6
    mms_towers: str = "both"
    # Number of final stages of a convolutional image tower that get adapters.
    conv_stages: int = 4

    def __post_init__(self) -> None:
        for name in ("bottleneck_dim", "num_heads", "mms_dim", "mms_num_heads", "conv_stages"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"HarMAConfig.{name} must be a positive integer, got {value!r}")
        if self.bottleneck_dim % self.num_heads:
            raise ConfigError(
                f"HarMAConfig.bottleneck_dim ({self.bottleneck_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.mms_dim % self.mms_num_heads:
            raise ConfigError(
                f"HarMAConfig.mms_dim ({self.mms_dim}) must be divisible by mms_num_heads ({self.mms_num_heads})"
            )
        if self.mms_towers not in MMS_TOWERS:
            raise ConfigError(f"HarMAConfig.mms_towers must be one of {MMS_TOWERS}, got {self.mms_towers!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "HarMAConfig":
        return cls(**_known_fields(cls, values))


@dataclass
class LossConfig:
    """Weights and hyper-parameters of the contrastive and adaptive triplet losses."""

    temperature_init: float = 0.07
    margin: float = 0.2
    gamma: float = 2.0
    contrastive_weight: float = 1.0
    triplet_weight: float = 1.0
    # True masks pairs of the same image out of the triplet negatives; False keeps
    # the official code's diagonal-only positives.
    mask_same_image_negatives: bool = True
    # True divides the triplet sum by the number of positive pairs.
    normalize_triplet: bool = False

    def __post_init__(self) -> None:
        if self.temperature_init <= 0:
            raise ConfigError(f"LossConfig.temperature_init must be > 0, got {self.temperature_init}")
        if self.margin < 0:
            raise ConfigError(f"LossConfig.margin must be >= 0, got {self.margin}")
        if self.gamma < 0:
            raise ConfigError(f"LossConfig.gamma must be >= 0, got {self.gamma}")


def _known_fields(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields {unknown}; valid fields are {sorted(names)}")
    return dict(values)


__all__ = ["HarMAConfig", "LossConfig", "MMS_TOWERS"]
