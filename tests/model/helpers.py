"""Builders of tiny HarMA models shared by the model tests."""

from __future__ import annotations

import torch

from model.backbone import BackboneSpec, build_backbone
from model.config import HarMAConfig
from model.harma import HarMAModel

TINY_NAMES = ("tiny-vit", "tiny-conv-bert")
CAPTIONS = ["there is an airplane at the airport .", "many green trees", "a river"]


def tiny_model(name: str = "tiny-vit", **harma_options) -> HarMAModel:
    backbone = build_backbone(BackboneSpec(kind="tiny", model_name=name))
    return HarMAModel(backbone, HarMAConfig(**harma_options))


def tiny_inputs(model: HarMAModel, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, model.image_size, model.image_size, generator=generator)
    captions = (CAPTIONS * batch)[:batch]
    return images, model.tokenizer(captions)


def perturb_adapters(model: HarMAModel, seed: int = 1) -> None:
    """Give every trained parameter random values so adapters change the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.trainable_parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
