"""Attaching HarMA adapters to the blocks of an open_clip model's two towers.

Each adapted block's MLP is replaced in place by a ``GatedAdapter`` that keeps
the original module as ``base_layer``. Supported towers:

* open_clip transformer towers: ``visual.transformer.resblocks.N.mlp`` and the
  text blocks at ``transformer.resblocks.N.mlp`` (CLIP) or
  ``text.transformer.resblocks.N.mlp`` (CustomTextCLIP);
* Hugging Face BERT-style text towers: ``text.transformer.encoder.layer.N.output.dense``,
  the second linear layer of the block's feed-forward network;
* convolutional timm image towers: the last ``conv_stages`` stages of
  ``visual.trunk.blocks``, whose feature maps are adapted as token sequences.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from model.config import HarMAConfig
from model.errors import InjectionError
from model.layers import MMA, MMS, GatedAdapter, MaskContext

logger = logging.getLogger(__name__)


@dataclass
class _Target:
    path: str
    parent: nn.Module
    attr: str
    width: int
    token_layout: str


@dataclass
class InjectionResult:
    """Result of ``inject_harma``: the adapted module paths per tower and the shared MMS list."""

    image_paths: list[str]
    text_paths: list[str]
    mms: nn.ModuleList
    text_masks: MaskContext
    text_mask_kind: str  # "causal", "padding" or "none"


def inject_harma(model: nn.Module, config: HarMAConfig) -> InjectionResult:
    """Wrap every block of both towers with a gated MMA and share MMS per depth level."""
    image_targets = _find_image_targets(model, config)
    text_targets, text_mask_kind = _find_text_targets(model)
    num_levels = min(len(image_targets), len(text_targets))
    mms = nn.ModuleList(
        MMS(config.bottleneck_dim, config.mms_dim, config.mms_num_heads, config.gate_init) for _ in range(num_levels)
    )
    text_masks = MaskContext()
    use_image_mms = config.mms_towers == "both"
    for index, target in enumerate(image_targets):
        level = index * num_levels // len(image_targets)
        _wrap(target, config, mms[level] if use_image_mms else None, masks=None)
    for index, target in enumerate(text_targets):
        level = index * num_levels // len(text_targets)
        _wrap(target, config, mms[level], masks=text_masks)
    adapted = sum(isinstance(module, GatedAdapter) for module in model.modules())
    expected = len(image_targets) + len(text_targets)
    if adapted != expected:
        raise InjectionError(f"adapted {adapted} blocks but the towers have {expected}")
    logger.info(
        "attached HarMA adapters to %d image and %d text blocks with %d shared MMS levels (mms_towers=%s)",
        len(image_targets), len(text_targets), num_levels, config.mms_towers,
    )
    return InjectionResult(
        image_paths=[t.path for t in image_targets],
        text_paths=[t.path for t in text_targets],
        mms=mms,
        text_masks=text_masks,
        text_mask_kind=text_mask_kind,
    )


def _wrap(target: _Target, config: HarMAConfig, mms, masks) -> None:
    base = getattr(target.parent, target.attr)
    if isinstance(base, GatedAdapter):
        raise InjectionError(f"{target.path} already carries a HarMA adapter")
    adapter = MMA(target.width, config.bottleneck_dim, config.num_heads, config.gate_init, mms=mms)
    device = next(base.parameters()).device
    wrapper = GatedAdapter(base, adapter, gate_init=config.gate_init, token_layout=target.token_layout, masks=masks)
    setattr(target.parent, target.attr, wrapper.to(device))


def _find_image_targets(model: nn.Module, config: HarMAConfig) -> list[_Target]:
    visual = getattr(model, "visual", None)
    tried = ["visual.transformer.resblocks.N.mlp", "visual.trunk.blocks.N (convolutional stages)"]
    if visual is None:
        raise InjectionError(f"model has no image tower 'visual'; tried {tried}")
    resblocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if resblocks is not None:
        return _mlp_targets(resblocks, "visual.transformer.resblocks")
    stages = getattr(getattr(visual, "trunk", None), "blocks", None)
    if stages is not None and len(stages) > 0:
        if all(hasattr(stage, "mlp") for stage in stages):
            return _mlp_targets(stages, "visual.trunk.blocks")
        return _conv_stage_targets(stages, config.conv_stages)
    raise InjectionError(f"no adaptable blocks found in the image tower; tried {tried}")


def _find_text_targets(model: nn.Module) -> tuple[list[_Target], str]:
    tried = [
        "transformer.resblocks.N.mlp",
        "text.transformer.resblocks.N.mlp",
        "text.transformer.encoder.layer.N.output.dense",
    ]
    text = getattr(model, "text", None)
    if text is None:
        text_transformer = getattr(model, "transformer", None)
        resblocks = getattr(text_transformer, "resblocks", None)
        if resblocks is not None:
            mask_kind = "causal" if getattr(model, "attn_mask", None) is not None else "none"
            return _mlp_targets(resblocks, "transformer.resblocks"), mask_kind
        raise InjectionError(f"no adaptable blocks found in the text tower; tried {tried}")
    resblocks = getattr(getattr(text, "transformer", None), "resblocks", None)
    if resblocks is not None:
        mask_kind = "causal" if getattr(text, "attn_mask", None) is not None else "none"
        return _mlp_targets(resblocks, "text.transformer.resblocks"), mask_kind
    layers = getattr(getattr(getattr(text, "transformer", None), "encoder", None), "layer", None)
    if layers is not None:
        targets = []
        for index, layer in enumerate(layers):
            dense = layer.output.dense
            path = f"text.transformer.encoder.layer.{index}.output.dense"
            targets.append(_Target(path, layer.output, "dense", dense.out_features, "sequence"))
        return targets, "padding"
    raise InjectionError(f"no adaptable blocks found in the text tower; tried {tried}")


def _mlp_targets(blocks: nn.Module, prefix: str) -> list[_Target]:
    targets = []
    for index, block in enumerate(blocks):
        mlp = block.mlp
        width = _output_width(mlp)
        targets.append(_Target(f"{prefix}.{index}.mlp", block, "mlp", width, "sequence"))
    return targets


def _conv_stage_targets(stages: nn.Sequential, num_stages: int) -> list[_Target]:
    if num_stages > len(stages):
        raise InjectionError(f"conv_stages={num_stages} but the image tower has only {len(stages)} stages")
    first = len(stages) - num_stages
    targets = []
    for index in range(first, len(stages)):
        width = _output_width(stages[index])
        targets.append(_Target(f"visual.trunk.blocks.{index}", stages, str(index), width, "feature_map"))
    return targets


def _output_width(module: nn.Module) -> int:
    """Return the output width of an MLP or a convolutional stage from its last layer."""
    for layer in reversed(list(module.modules())):
        if isinstance(layer, nn.Linear):
            return layer.out_features
        if isinstance(layer, nn.Conv2d):
            return layer.out_channels
        if isinstance(layer, nn.BatchNorm2d):
            return layer.num_features
    raise InjectionError(f"cannot tell the output width of {type(module).__name__}")
