"""The HarMA model: a frozen open_clip backbone with gated adapters in both towers.

Trained parameters are found by module type, never by name: every ``MMA``,
shared ``MMS`` and ``Gate``, the loss temperature, and the projections the
backbone lacks (``Backbone.new_modules``).
"""

from __future__ import annotations

import logging
import math
from typing import Iterator, Optional

import torch
from torch import nn
from torch.nn import functional as F

from model.backbone import Backbone
from model.config import HarMAConfig
from model.frozen import wrap_frozen_layers
from model.inject import InjectionResult, inject_harma
from model.layers import MMA, MMS, GatedAdapter

logger = logging.getLogger(__name__)

# CLIP clamps its logit scale at 100 (temperature 0.01) for stability.
MAX_LOGIT_SCALE = 100.0


class HarMAModel(nn.Module):
    """A backbone with HarMA adapters; ``use_adapters=False`` trains projections only."""

    def __init__(
        self,
        backbone: Backbone,
        config: Optional[HarMAConfig] = None,
        *,
        temperature_init: float = 0.07,
        use_adapters: bool = True,
        lean_frozen_backward: bool = True,
    ):
        super().__init__()
        self.config = config or HarMAConfig()
        self.identity = backbone.identity
        self.tokenizer = backbone.tokenizer
        self.image_size = backbone.image_size
        self.image_mean = backbone.image_mean
        self.image_std = backbone.image_std
        self.use_adapters = use_adapters
        self.clip = backbone.model
        # A plain list: these modules are already registered inside ``self.clip``.
        self.new_modules = list(backbone.new_modules)
        self.injection: Optional[InjectionResult] = None
        if use_adapters:
            self.injection = inject_harma(self.clip, self.config)
            self.mms = self.injection.mms
        else:
            self.mms = nn.ModuleList()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)))
        self._freeze_backbone()
        if lean_frozen_backward and use_adapters and self._image_tower_is_convolutional():
            # The wrappers compute the same values and keep less for backward (model/frozen.py).
            wrapped = wrap_frozen_layers(self.clip.visual)
            logger.info("frozen image layers that keep only input-gradient state: %d", wrapped)
        trainable, total = self.parameter_counts()
        logger.info("HarMA model: %d trainable of %d parameters (%.2f %%)", trainable, total, 100 * trainable / total)

    def _freeze_backbone(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        for parameter in self.trainable_parameters():
            parameter.requires_grad_(True)
        self.train(False)

    def _image_tower_is_convolutional(self) -> bool:
        return any(isinstance(module, GatedAdapter) and module.token_layout == "feature_map"
                   for module in self.clip.visual.modules())

    def trainable_modules(self) -> Iterator[nn.Module]:
        for module in self.modules():
            if isinstance(module, GatedAdapter):
                yield module.adapter
                yield module.gate
            elif isinstance(module, MMS):
                yield module
        yield from self.new_modules

    def trainable_parameters(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for module in self.trainable_modules():
            for parameter in module.parameters():
                seen.setdefault(id(parameter), parameter)
        seen.setdefault(id(self.logit_scale), self.logit_scale)
        return list(seen.values())

    def parameter_counts(self) -> tuple[int, int]:
        """Return (trainable, total) parameter counts."""
        trainable = sum(p.numel() for p in self.trainable_parameters())
        total = sum(p.numel() for p in self.parameters())
        return trainable, total

    def train(self, mode: bool = True) -> "HarMAModel":
        # The backbone stays in eval mode (dropout off, norm statistics fixed);
        # only the trained modules follow ``mode``.
        super().train(False)
        for module in self.trainable_modules():
            module.train(mode)
        self.training = mode
        return self

    @property
    def temperature(self) -> torch.Tensor:
        return 1.0 / self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.clip.encode_image(images)  # [batch, embed_dim]
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        tokens = self._trim_padding(tokens)
        masks = self.injection.text_masks if self.injection is not None else None
        if masks is not None:
            masks.mask = self._text_mask(tokens)
        try:
            features = self.clip.encode_text(tokens)  # [batch, embed_dim]
        finally:
            if masks is not None:
                masks.mask = None
        return F.normalize(features, dim=-1) if normalize else features

    def _trim_padding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Drop padding columns that no sequence of the batch uses, for Hugging Face towers.

        Their attention masks padding keys and mean pooling skips padding, so
        the features do not change. open_clip towers keep the full context
        because their positional embedding has a fixed length.
        """
        config = getattr(getattr(self.clip, "text", None), "config", None)
        if config is None or tokens.ndim != 2 or tokens.shape[1] == 0:
            return tokens
        used = (tokens != config.pad_token_id).any(dim=0).nonzero()
        length = int(used.max()) + 1 if len(used) else 1
        return tokens[:, :length]

    def _text_mask(self, tokens: torch.Tensor) -> Optional[torch.Tensor]:
        """Return the adapter attention mask matching the text tower's own attention.

        True marks pairs that may attend. A causal tower pools the end-of-text
        token, which must not see the padding after it, so its adapters use the
        same causal mask ``[tokens, tokens]``. A bidirectional Hugging Face tower
        masks padding keys, ``[batch, 1, 1, tokens]``.
        """
        kind = self.injection.text_mask_kind
        if kind == "causal":
            length = tokens.shape[1]
            return torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        if kind == "padding":
            pad_id = self.clip.text.config.pad_token_id
            return (tokens != pad_id)[:, None, None, :]
        return None

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(images), self.encode_text(tokens)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Return the trained weights only: adapters, gates, MMS, projections and temperature."""
        trainable = {id(p) for p in self.trainable_parameters()}
        return {
            name: parameter.detach().cpu().contiguous()
            for name, parameter in self.named_parameters()
            if id(parameter) in trainable
        }


__all__ = ["HarMAModel", "MMA", "MMS"]
