"""Annotation readers, caption cleaning, transforms and bad-image handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.data.annotations import read_annotations
from model.data.captions import clean_caption
from model.data.datasets import ImageDataset, PairDataset, collate_skipping
from model.data.transforms import ToNormalizedTensor, build_test_transform, build_train_transform, to_rgb
from model.errors import DataError
from tests.conftest import UCM_ANNOTATIONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rsitmd"


def test_list_form_splits_match_published_counts():
    counts = {split: len(read_annotations(UCM_ANNOTATIONS, split=split)) for split in ("train", "val", "test")}
    assert counts == {"train": 1680, "val": 210, "test": 210}
    record = read_annotations(UCM_ANNOTATIONS, split="test")[0]
    assert record.path.is_file()
    assert len(record.captions) == 5
    assert record.label


def test_release_form_train_groups_captions_by_image():
    records = read_annotations(FIXTURES / "rsitmd_train.json", image_root=Path("/images"), split="train")
    entries = json.loads((FIXTURES / "rsitmd_train.json").read_text())
    assert sum(len(r.captions) for r in records) == len(entries)
    assert len(records) == len({e["image"] for e in entries})
    first = records[0]
    assert first.path == Path("/images") / entries[0]["image"]
    assert first.label == entries[0]["label_name"]
    assert first.captions[0] == entries[0]["caption"]


@pytest.mark.parametrize("name", ["rsitmd_val.json", "rsitmd_test.json"])
def test_release_form_eval_files_have_five_captions(name):
    records = read_annotations(FIXTURES / name)
    assert len(records) == 5
    assert all(len(r.captions) == 5 for r in records)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[]", "non-empty JSON list"),
    ('[{"foo": 1}]', "neither"),
    ('[{"captions": ["a"], "image": ""}]', "missing or empty 'image'"),
])
def test_bad_annotation_files_are_reported(tmp_path, content, message):
    path = tmp_path / "annotations.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_annotations(path)


def test_clean_caption_lowercases_strips_and_truncates():
    assert clean_caption("There is an Airplane at the airport .") == "there is an airplane at the airport"
    assert clean_caption("roads,  trees; and-houses!") == "roads trees and houses"
    assert len(clean_caption(" ".join(["word"] * 50)).split()) == 30


def test_transforms_produce_square_normalised_tensors():
    image = Image.open(read_annotations(UCM_ANNOTATIONS, split="test")[0].path)
    train = build_train_transform(64, (0.5,) * 3, (0.5,) * 3)(image.convert("RGB"))
    test = build_test_transform(64, (0.5,) * 3, (0.5,) * 3)(image.convert("RGB"))
    assert train.shape == test.shape == (3, 64, 64)
    assert test.min() >= -1.0
    assert test.max() <= 1.0


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "I;16", "LA"])
def test_to_rgb_converts_every_mode(mode):
    if mode == "I;16":
        image = Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    else:
        image = Image.new(mode, (8, 8))
    converted = to_rgb(image)
    assert converted.mode == "RGB"
    assert converted.size == (8, 8)


def _records_with_one_bad_image(tmp_path):
    records = read_annotations(UCM_ANNOTATIONS, split="test")[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(records[0].path.read_bytes()[:200])  # truncated JPEG
    records[1].path = broken
    records[2].path = tmp_path / "missing.jpg"
    return records


def test_bad_images_are_skipped_and_counted(tmp_path):
    records = _records_with_one_bad_image(tmp_path)
    dataset = PairDataset(records, build_test_transform(32, (0.5,) * 3, (0.5,) * 3),
                          lambda texts: torch.zeros(len(texts), 4, dtype=torch.long), on_bad_image="skip",
                          captions_per_epoch="one")
    batch = collate_skipping([dataset[i] for i in range(len(records))])
    assert batch["skipped"] == 2
    assert batch["image"].shape[0] == 1


def test_bad_images_fail_clearly_when_asked(tmp_path):
    records = _records_with_one_bad_image(tmp_path)
    dataset = ImageDataset(records, build_test_transform(32, (0.5,) * 3, (0.5,) * 3), on_bad_image="fail")
    with pytest.raises(DataError, match="broken.jpg"):
        dataset[1]


@pytest.mark.parametrize("mean, std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                       ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
def test_normalized_tensor_equals_torchvision(mean, std):
    from torchvision import transforms as T

    image_path = sorted((UCM_ANNOTATIONS.parent / "images").rglob("*.jpg"))[0]
    image = Image.open(image_path).convert("RGB").resize((64, 48))
    expected = T.Normalize(mean, std)(T.ToTensor()(image))
    actual = ToNormalizedTensor(mean, std)(image)
    assert actual.dtype == torch.float32
    assert actual.shape == (3, 48, 64)
    assert actual.is_contiguous()
    assert torch.equal(actual, expected)


def test_normalized_tensor_rejects_non_rgb():
    with pytest.raises(ValueError, match="mode 'L'"):
        ToNormalizedTensor((0.5,) * 3, (0.5,) * 3)(Image.new("L", (4, 4)))
