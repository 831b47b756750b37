"""Lean backward passes of frozen convolutional layers: same gradients, less saved state."""

from __future__ import annotations

import pytest
import torch
from timm.layers import BatchNormAct2d, Conv2dSame
from torch import nn

from model.backbone import BackboneSpec, build_backbone
from model.frozen import FrozenBatchNormAct2d, FrozenConv2d, wrap_frozen_layers
from model.harma import HarMAModel
from tests.model.helpers import perturb_adapters, tiny_inputs


def _randomize_norm_statistics(model: HarMAModel) -> None:
    """Give the batch norms non-trivial running statistics, the same for every model built alike."""
    generator = torch.Generator().manual_seed(2)
    norms = [module for module in model.clip.visual.modules() if isinstance(module, BatchNormAct2d)]
    for norm in norms:
        norm.running_mean.copy_(0.3 * torch.randn(norm.running_mean.shape, generator=generator))
        norm.running_var.copy_(0.5 + torch.rand(norm.running_var.shape, generator=generator))
        norm.bias.data.copy_(0.1 * torch.randn(norm.bias.shape, generator=generator))


def _conv_models() -> tuple[HarMAModel, HarMAModel]:
    """Return the tiny convolutional model with and without lean backward, with equal weights."""
    torch.manual_seed(0)
    lean = HarMAModel(build_backbone(BackboneSpec(kind="tiny", model_name="tiny-conv-bert")))
    torch.manual_seed(0)
    plain = HarMAModel(build_backbone(BackboneSpec(kind="tiny", model_name="tiny-conv-bert")),
                       lean_frozen_backward=False)
    _randomize_norm_statistics(lean)
    _randomize_norm_statistics(plain)
    perturb_adapters(lean)
    plain.load_state_dict(lean.state_dict(), strict=False)
    plain_names = dict(plain.named_parameters())
    for name, parameter in lean.named_parameters():
        if parameter.requires_grad:
            with torch.no_grad():
                plain_names[name].copy_(parameter)
    return lean, plain


def _adapter_gradients(model: HarMAModel, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    image_features, text_features = model(images, tokens)
    (image_features @ text_features.T).square().sum().backward()
    return {name: parameter.grad for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_lean_backward_gives_same_gradients():
    lean, plain = _conv_models()
    images, tokens = tiny_inputs(lean, batch=4)
    lean_gradients = _adapter_gradients(lean, images, tokens)
    plain_gradients = _adapter_gradients(plain, images, tokens)
    assert lean_gradients.keys() == plain_gradients.keys()
    compared = 0
    for name, gradient in plain_gradients.items():
        if gradient is None:  # the temperature is not part of this loss
            assert lean_gradients[name] is None, name
            continue
        # Batch norm as scale and shift rounds differently from F.batch_norm, by about
        # 1e-5 relative, and scalar gate gradients sum many terms that partly cancel.
        scale = max(float(gradient.abs().max()), 1e-3)
        torch.testing.assert_close(lean_gradients[name], gradient, rtol=1e-4, atol=1e-4 * scale, msg=name)
        compared += 1
    image_adapters = [name for name in plain_gradients if name.startswith("clip.visual.trunk.") and "adapter" in name]
    assert image_adapters
    assert all(plain_gradients[name] is not None for name in image_adapters)
    assert compared > len(image_adapters)


def test_lean_forward_matches_while_training():
    lean, plain = _conv_models()
    images, _ = tiny_inputs(lean, batch=2)
    lean.train()
    plain.train()
    torch.testing.assert_close(lean.encode_image(images), plain.encode_image(images), rtol=1e-5, atol=1e-6)


def test_lean_backward_leaves_inference_bit_identical():
    lean, plain = _conv_models()
    images, _ = tiny_inputs(lean, batch=2)
    with torch.no_grad():
        assert torch.equal(lean.encode_image(images), plain.encode_image(images))


def test_lean_backward_saves_less_for_backward():
    lean, plain = _conv_models()
    images, _ = tiny_inputs(lean, batch=4)

    def saved_bytes(model: HarMAModel) -> int:
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model.encode_image(images)
        return sum(storages.values())

    # The tiny tower is mostly adapters. The default one drops from 708 to 209 MiB at batch 32.
    assert saved_bytes(lean) < 0.8 * saved_bytes(plain)


def test_wrap_covers_convolutions_and_norms():
    lean, _ = _conv_models()
    wrappers = [module for module in lean.clip.visual.modules()
                if isinstance(module, (FrozenConv2d, FrozenBatchNormAct2d))]
    convolutions = [module for module in lean.clip.visual.modules()
                    if isinstance(module, nn.Conv2d) and not isinstance(module, FrozenConv2d)]
    norms = [module for module in lean.clip.visual.modules() if isinstance(module, BatchNormAct2d)]
    assert len(wrappers) == len(convolutions) + len(norms)
    assert any(isinstance(module.base_layer, Conv2dSame) for module in wrappers if isinstance(module, FrozenConv2d))


def test_wrapped_conv_falls_back_when_trainable():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    wrapper = FrozenConv2d(conv, same_padding=False)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    wrapper(x).sum().backward()
    assert conv.weight.grad is not None  # a trainable convolution keeps its weight gradient


@pytest.mark.parametrize("stride", [1, 2])
def test_frozen_conv_input_gradient_matches(stride):
    torch.manual_seed(0)
    conv = Conv2dSame(4, 6, 3, stride=stride).requires_grad_(False)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    conv(x).square().sum().backward()
    expected = x.grad.clone()
    x.grad = None
    container = nn.Sequential(conv)
    assert wrap_frozen_layers(container) == 1
    container(x).square().sum().backward()
    torch.testing.assert_close(x.grad, expected)
