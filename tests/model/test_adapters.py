"""Checks shared by every supported tower type: identity at step 0, gradients,
batch independence, ownership of adapters and exact adapted-module counts."""

from __future__ import annotations

import open_clip
import pytest
import torch

from model.backbone import Backbone, BackboneSpec, build_backbone
from model.config import HarMAConfig
from model.errors import ConfigError, InjectionError
from model.harma import HarMAModel
from model.inject import inject_harma
from model.layers import MMA, MMS, GatedAdapter, TokenSelfAttention
from tests.model.helpers import TINY_NAMES, perturb_adapters, tiny_inputs, tiny_model

# tower type -> (image blocks adapted, text blocks adapted, text mask kind)
EXPECTED_BLOCKS = {"tiny-vit": (2, 2, "causal"), "tiny-conv-bert": (4, 2, "padding")}


@pytest.mark.parametrize("name", TINY_NAMES)
def test_identical_to_backbone_at_init(name):
    backbone = build_backbone(BackboneSpec(kind="tiny", model_name=name))
    images = torch.randn(3, 3, backbone.image_size, backbone.image_size)
    tokens = backbone.tokenizer(["a red roof", "two planes near a runway .", "x"])
    model = HarMAModel(backbone)
    # The bare tower gets the same input columns that HarMAModel keeps.
    bare_tokens = model._trim_padding(tokens)
    with torch.no_grad():
        bare_image = backbone.model.encode_image(images)
        bare_text = backbone.model.encode_text(bare_tokens)
    with torch.no_grad():
        adapted_image = model.encode_image(images, normalize=False)
        adapted_text = model.encode_text(tokens, normalize=False)
    assert torch.equal(adapted_image, bare_image)
    assert torch.equal(adapted_text, bare_text)


@pytest.mark.parametrize("name", TINY_NAMES)
def test_adapted_block_counts(name):
    model = tiny_model(name)
    image_blocks, text_blocks, mask_kind = EXPECTED_BLOCKS[name]
    assert len(model.injection.image_paths) == image_blocks
    assert len(model.injection.text_paths) == text_blocks
    assert sum(isinstance(m, GatedAdapter) for m in model.modules()) == image_blocks + text_blocks
    assert len(model.mms) == min(image_blocks, text_blocks)
    assert model.injection.text_mask_kind == mask_kind


@pytest.mark.parametrize("name", TINY_NAMES)
def test_only_trained_parameters_get_gradients(name):
    model = tiny_model(name)
    perturb_adapters(model)
    model.train()
    images, tokens = tiny_inputs(model)
    image_features, text_features = model(images, tokens)
    (model.scale() * image_features @ text_features.T).logsumexp(dim=1).sum().backward()
    trainable = {id(p) for p in model.trainable_parameters()}
    for parameter_name, parameter in model.named_parameters():
        if id(parameter) in trainable:
            assert parameter.grad is not None, f"{parameter_name} got no gradient"
            assert torch.isfinite(parameter.grad).all(), f"{parameter_name} has a non-finite gradient"
        else:
            assert parameter.grad is None, f"frozen {parameter_name} got a gradient"
            assert not parameter.requires_grad, f"frozen {parameter_name} requires grad"


@pytest.mark.parametrize("name", TINY_NAMES)
def test_trained_parameters_are_adapters_gates_temperature_projections(name):
    model = tiny_model(name)
    allowed = set()
    for module in model.modules():
        if isinstance(module, (MMA, MMS)):
            allowed.update(id(p) for p in module.parameters())
        if isinstance(module, GatedAdapter):
            allowed.update(id(p) for p in module.gate.parameters())
    for module in model.new_modules:
        allowed.update(id(p) for p in module.parameters())
    allowed.add(id(model.logit_scale))
    assert {id(p) for p in model.trainable_parameters()} == allowed


@pytest.mark.parametrize("name", TINY_NAMES)
def test_batch_permutation_permutes_outputs(name):
    model = tiny_model(name)
    perturb_adapters(model)
    images, tokens = tiny_inputs(model, batch=4)
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        image_features, text_features = model(images, tokens)
        permuted_image, permuted_text = model(images[order], tokens[order])
    torch.testing.assert_close(permuted_image, image_features[order], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(permuted_text, text_features[order], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TINY_NAMES)
def test_backbone_stays_in_eval_mode(name):
    model = tiny_model(name)
    model.train()
    adapter_modules = {id(m) for top in model.trainable_modules() for m in top.modules()}
    for module in model.clip.modules():
        if id(module) not in adapter_modules:
            assert not module.training, f"backbone module {type(module).__name__} is in training mode"
    assert all(m.training for top in model.trainable_modules() for m in top.modules())


def test_two_models_share_no_parameters():
    first = tiny_model("tiny-vit")
    second = tiny_model("tiny-vit")
    first_ids = {id(p) for p in first.parameters()}
    assert first_ids.isdisjoint(id(p) for p in second.parameters())
    perturb_adapters(first)
    images, tokens = tiny_inputs(second)
    with torch.no_grad():
        bare = second.clip.encode_image(images)
        assert torch.equal(second.encode_image(images, normalize=False), bare)


def test_mms_is_shared_between_towers_per_level():
    model = tiny_model("tiny-vit")
    wrappers = [m for m in model.clip.modules() if isinstance(m, GatedAdapter)]
    image = [w for w in wrappers if w.adapter.mms is not None][:2]
    levels = {id(w.adapter.mms) for w in wrappers}
    assert levels == {id(m) for m in model.mms}
    assert image[0].adapter.mms is not image[1].adapter.mms


def test_text_only_mms_option():
    model = tiny_model("tiny-vit", mms_towers="text")
    image_adapters = [model.clip.visual.transformer.resblocks[i].mlp.adapter for i in range(2)]
    text_adapters = [model.clip.transformer.resblocks[i].mlp.adapter for i in range(2)]
    assert all(adapter.mms is None for adapter in image_adapters)
    assert all(adapter.mms is not None for adapter in text_adapters)


def test_depth_levels_map_proportionally():
    model = tiny_model("tiny-conv-bert")  # 4 image stages, 2 text layers -> 2 levels
    stages = [model.clip.visual.trunk.blocks[i] for i in range(3, 7)]
    levels = list(model.mms)
    assert [levels.index(stage.adapter.mms) for stage in stages] == [0, 0, 1, 1]
    layers = model.clip.text.transformer.encoder.layer
    assert [levels.index(layer.output.dense.adapter.mms) for layer in layers] == [0, 1]


def test_gates_start_at_configured_value():
    model = tiny_model("tiny-vit", gate_init=0.6)
    gates = [m.gate.logit for m in model.modules() if isinstance(m, (MMA, MMS, GatedAdapter))]
    assert gates and all(float(g) == pytest.approx(0.6) for g in gates)


def test_vit_b_32_trainable_count_near_5_9_million():
    clip = open_clip.create_model("ViT-B-32", pretrained=None)
    backbone = Backbone(model=clip, tokenizer=open_clip.get_tokenizer("ViT-B-32"), identity={"name": "ViT-B-32"},
                        image_size=224, image_mean=(0, 0, 0), image_std=(1, 1, 1))
    model = HarMAModel(backbone)
    trainable, total = model.parameter_counts()
    assert len(model.injection.image_paths) == 12
    assert len(model.injection.text_paths) == 12
    assert 5.8e6 <= trainable <= 6.0e6
    assert total > 150e6


def test_bert_tokens_are_trimmed_to_longest_sequence():
    model = tiny_model("tiny-conv-bert")
    tokens = model.tokenizer(["storage tanks", "a river"])
    trimmed = model._trim_padding(tokens)
    assert trimmed.shape[1] < tokens.shape[1]
    assert (trimmed[:, -1] != 0).any()
    assert torch.equal(tokens[:, trimmed.shape[1]:], torch.zeros_like(tokens[:, trimmed.shape[1]:]))


def test_padding_does_not_change_bert_text_features():
    model = tiny_model("tiny-conv-bert")
    perturb_adapters(model)
    tokens = model.tokenizer(["storage tanks near a harbor"])
    padded = torch.cat([tokens, torch.zeros(1, 8, dtype=tokens.dtype)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(padded), model.encode_text(tokens), rtol=1e-5, atol=1e-6)


def test_causal_text_tower_ignores_tokens_after_end_of_text():
    model = tiny_model("tiny-vit")
    perturb_adapters(model)
    tokens = model.tokenizer(["storage tanks"])
    altered = tokens.clone()
    end = int(tokens.argmax(dim=-1))
    altered[0, end + 1:] = 1234  # garbage after the end-of-text token
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(altered), model.encode_text(tokens), rtol=1e-5, atol=1e-6)


def test_injecting_twice_is_rejected():
    model = tiny_model("tiny-vit")
    with pytest.raises(InjectionError, match="already carries"):
        inject_harma(model.clip, HarMAConfig())


def test_model_without_towers_is_rejected():
    with pytest.raises(InjectionError, match="tried"):
        inject_harma(torch.nn.Linear(2, 2), HarMAConfig())


@pytest.mark.parametrize("field, value", [("bottleneck_dim", 100), ("mms_towers", "image"), ("num_heads", 0)])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        HarMAConfig(**{field: value})


def _reference_and_sdpa_masks(mask_kind: str) -> tuple[dict, torch.Tensor | None]:
    """Return nn.MultiheadAttention's mask arguments (True blocks) and the same mask with True allowing."""
    if mask_kind == "causal":
        blocked = torch.ones(7, 7, dtype=torch.bool).triu(1)
        return {"attn_mask": blocked}, ~blocked
    if mask_kind == "padding":
        padding = torch.zeros(3, 7, dtype=torch.bool)
        padding[0, 5:] = True
        padding[2, 2:] = True
        return {"key_padding_mask": padding}, ~padding[:, None, None, :]
    return {}, None


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding"])
def test_token_attention_matches_multihead_attention(mask_kind):
    torch.manual_seed(0)
    attention = TokenSelfAttention(dim=32, num_heads=4).eval()
    x = torch.randn(3, 7, 32)
    reference_masks, allowed = _reference_and_sdpa_masks(mask_kind)
    with torch.no_grad():
        expected, _ = attention.attn(x, x, x, need_weights=False, **reference_masks)
        actual = attention(x, allowed)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
