"""Backbone loading: local open_clip checkpoint files, the offline default and identity checks."""

from __future__ import annotations

import logging

import open_clip
import pytest
import torch

from model import default_backbone
from model.backbone import BackboneSpec, build_backbone
from model.errors import BackboneError, CheckpointMismatch, ConfigError, WeightHashMismatch


@pytest.fixture(scope="module")
def vit_b_32_quickgelu_state():
    """A random ViT-B-32 QuickGELU state dict in fp16, laid out like GeoRSCLIP's RS5M file."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    return {key: value.half() for key, value in model.state_dict().items()}


def _image_features(backbone, seed=0):
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return backbone.model.encode_image(images)


def test_plain_rs5m_style_file_loads(tmp_path, vit_b_32_quickgelu_state):
    path = tmp_path / "RS5M_ViT-B-32_RET-2.pt"
    torch.save(vit_b_32_quickgelu_state, path)
    backbone = build_backbone(BackboneSpec(kind="open_clip", model_name="ViT-B-32", checkpoint=str(path),
                                           quick_gelu=True))
    loaded = backbone.model.state_dict()["visual.conv1.weight"]
    torch.testing.assert_close(loaded, vit_b_32_quickgelu_state["visual.conv1.weight"].float())
    assert backbone.identity["quick_gelu"] is True
    assert len(backbone.identity["weights_sha256"]) == 64
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_wrapped_and_prefixed_file_loads_the_same(tmp_path, vit_b_32_quickgelu_state):
    plain = tmp_path / "plain.pt"
    wrapped = tmp_path / "wrapped.pt"
    torch.save(vit_b_32_quickgelu_state, plain)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in vit_b_32_quickgelu_state.items()}}, wrapped)
    first = build_backbone(BackboneSpec(kind="open_clip", model_name="ViT-B-32", checkpoint=str(plain), quick_gelu=True))
    second = build_backbone(BackboneSpec(kind="open_clip", model_name="ViT-B-32", checkpoint=str(wrapped),
                                         quick_gelu=True))
    assert torch.equal(_image_features(first), _image_features(second))
    assert first.identity["weights_sha256"] != second.identity["weights_sha256"]


def test_mismatched_checkpoint_names_both(tmp_path, vit_b_32_quickgelu_state):
    path = tmp_path / "vit_b_32.pt"
    torch.save(vit_b_32_quickgelu_state, path)
    with pytest.raises(CheckpointMismatch) as raised:
        build_backbone(BackboneSpec(kind="open_clip", model_name="ViT-B-16", checkpoint=str(path)))
    message = str(raised.value)
    assert str(path) in message
    assert "ViT-B-16" in message


def test_missing_checkpoint_file_is_reported(tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        build_backbone(BackboneSpec(kind="open_clip", model_name="ViT-B-32", checkpoint=str(tmp_path / "none.pt")))


def test_corrupt_checkpoint_file_is_reported(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(BackboneError, match="cannot read checkpoint"):
        build_backbone(BackboneSpec(kind="open_clip", model_name="ViT-B-32", checkpoint=str(path)))


def test_unknown_model_name_is_reported(tmp_path):
    with pytest.raises(BackboneError, match="unknown open_clip model"):
        build_backbone(BackboneSpec(kind="open_clip", model_name="ViT-Q-99", checkpoint=str(tmp_path / "x.pt")))


@pytest.mark.parametrize("options", [
    {"kind": "open_clip"},
    {"kind": "open_clip", "model_name": "ViT-B-32"},
    {"kind": "open_clip", "model_name": "ViT-B-32", "pretrained": "openai", "checkpoint": "x.pt"},
    {"kind": "somewhere"},
])
def test_invalid_spec_is_rejected(options):
    with pytest.raises(ConfigError):
        BackboneSpec(**options)


def test_offline_default_builds_with_pinned_hashes():
    backbone = build_backbone(BackboneSpec())
    assert backbone.identity["weights_sha256"] == {
        "image": default_backbone.EFFICIENTNET_SHA256, "text": default_backbone.MINILM_SHA256}
    assert len(backbone.new_modules) == 2
    tokens = backbone.tokenizer(["storage tanks"])
    with torch.no_grad():
        assert backbone.model.encode_text(tokens).shape == (1, default_backbone.EMBED_DIM)


def test_offline_default_rejects_altered_weights(monkeypatch):
    monkeypatch.setattr(default_backbone, "EFFICIENTNET_SHA256", "0" * 64)
    with pytest.raises(WeightHashMismatch, match="efficientnet-lite0"):
        build_backbone(BackboneSpec())


def _load_report(*rows: str) -> logging.LogRecord:
    table = "\n".join(["Key | Status |  | ", "----+--------+--+-", *rows])
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1,
                             "BertModel LOAD REPORT from: minilm\n" + table, None, None)


def test_load_report_filter_drops_only_unused_pooler():
    from model.default_backbone import _UnusedPoolerReportFilter

    report_filter = _UnusedPoolerReportFilter()
    pooler_only = _load_report("pooler.dense.bias   | UNEXPECTED |  | ", "pooler.dense.weight | UNEXPECTED |  | ")
    with_missing = _load_report("pooler.dense.bias | UNEXPECTED |  | ",
                                "encoder.layer.0.output.dense.weight | MISSING |  | ")
    unrelated = logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, "other", None, None)
    assert report_filter.filter(pooler_only) is False
    assert report_filter.filter(with_missing) is True
    assert report_filter.filter(unrelated) is True
