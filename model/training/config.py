"""Training configuration: a YAML file becomes the defaults, ``--set key=value`` overrides them.

The resolved configuration is written to the output folder as
``train_config.json`` so that every run records exactly what it did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from model.backbone import BackboneSpec
from model.config import HarMAConfig, LossConfig
from model.errors import ConfigError


@dataclass
class TrainConfig:
    """Everything a training run needs; paths are relative to the working directory."""

    output_dir: str = "runs/harma"
    train_annotations: str = "data/ucm_captions/annotations.json"
    val_annotations: Optional[str] = None  # defaults to train_annotations
    image_root: Optional[str] = None  # for release-form annotation files
    train_split: str = "train"
    val_split: str = "val"
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    harma: HarMAConfig = field(default_factory=HarMAConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    use_adapters: bool = True
    epochs: int = 10
    batch_size: int = 64  # per process
    lr: float = 4e-4
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_fraction: float = 0.1
    captions_per_epoch: str = "all"  # "all" or "one" random caption per image
    on_bad_image: str = "skip"  # "skip" (counted warning) or "fail"
    num_workers: int = 2
    eval_batch_size: int = 64
    max_steps_per_epoch: Optional[int] = None  # for smoke runs
    seed: int = 0
    device: Optional[str] = None  # default: cuda when available
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16
    resume: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneSpec.from_dict(self.backbone)
        if isinstance(self.harma, dict):
            self.harma = HarMAConfig.from_dict(self.harma)
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        self.betas = tuple(self.betas)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"TrainConfig.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"TrainConfig.precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(path: Optional[Path], overrides: list[str]) -> TrainConfig:
    """Read a YAML config (or the defaults) and apply ``key=value`` overrides.

    Nested fields use dots (``harma.mms_towers=text``); values are parsed as YAML,
    so numbers, booleans and lists keep their types.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        values.update(loaded)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must look like key=value")
        _set_nested(values, key.strip().split("."), yaml.safe_load(raw))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown training options {unknown}; valid options are {sorted(known)}")
    try:
        return TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(f"invalid training config: {error}") from error


def _set_nested(values: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = values.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: {key} is not a section")
        values = child
    values[keys[-1]] = value
