"""Tiny randomly initialised backbones for tests and smoke runs.

They have the same structure as real backbones (an open_clip ViT with a causal
text transformer, or a timm EfficientNet with a BERT text tower) at a size that
runs in milliseconds. Their weights are random, so their retrieval quality is
meaningless; never serve them.
"""

from __future__ import annotations

import open_clip
import torch
from open_clip.hf_model import HFTextEncoder
from open_clip.model import CLIP, CustomTextCLIP
from transformers import BertConfig

from model.backbone import Backbone
from model.errors import ConfigError

TINY_NAMES = ("tiny-vit", "tiny-conv-bert")
EMBED_DIM = 16


def build_tiny_backbone(name: str, *, seed: int = 0) -> Backbone:
    if name not in TINY_NAMES:
        raise ConfigError(f"unknown tiny backbone {name!r}; choose one of {TINY_NAMES}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        backbone = _build_tiny_vit() if name == "tiny-vit" else _build_tiny_conv_bert()
    finally:
        torch.random.set_rng_state(generator_state)
    backbone.identity = {"name": name, "kind": "tiny", "seed": seed}
    return backbone


def _build_tiny_vit() -> Backbone:
    context_length = 16
    model = CLIP(
        embed_dim=EMBED_DIM,
        vision_cfg={"layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
        text_cfg={"context_length": context_length, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    )
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        identity={},
        image_size=32,
        image_mean=open_clip.OPENAI_DATASET_MEAN,
        image_std=open_clip.OPENAI_DATASET_STD,
    )


def _build_tiny_conv_bert() -> Backbone:
    from model.default_backbone import minilm_model_dir

    vocab_dir = str(minilm_model_dir())
    context_length = 16
    model = CustomTextCLIP(
        embed_dim=EMBED_DIM,
        vision_cfg={"timm_model_name": "tf_efficientnet_lite0", "timm_model_pretrained": False,
                    "timm_pool": "avg", "timm_proj": "linear", "image_size": 64},
        text_cfg={"hf_model_name": vocab_dir, "hf_tokenizer_name": vocab_dir, "hf_model_pretrained": False,
                  "hf_proj_type": "linear", "hf_pooler_type": "mean_pooler", "context_length": context_length},
    )
    bert = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64)
    model.text = HFTextEncoder(vocab_dir, output_dim=EMBED_DIM, config=bert, pooler_type="mean_pooler",
                               proj_type="linear")
    tokenizer = open_clip.tokenizer.HFTokenizer(vocab_dir, context_length=context_length)
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        identity={},
        image_size=64,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
        new_modules=[model.visual.head, model.text.proj],
    )
