"""End-to-end checks of the shipped default model on real UCM-Captions test images."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.annotations import read_annotations
from model.data.datasets import load_rgb
from tests.conftest import UCM_ANNOTATIONS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("requires_default_model")]

CLASSES = ("airplane", "baseballdiamond", "beach", "forest", "harbor", "storagetanks", "tenniscourt", "river")


@pytest.fixture(scope="module")
def encoder():
    from model.encoder import load_encoder

    return load_encoder("default", device="cpu")


@pytest.fixture(scope="module")
def scenes():
    """One test image per class, with the class's first caption."""
    records = read_annotations(UCM_ANNOTATIONS, split="test")
    chosen = {}
    for record in records:
        if record.label in CLASSES and record.label not in chosen:
            chosen[record.label] = record
    return [chosen[label] for label in CLASSES]


def test_default_checkpoint_records_its_backbone(encoder):
    assert encoder.identity["backbone"]["kind"] == "offline_default"
    assert len(encoder.identity["adapters_sha256"]) == 64
    assert encoder.embed_dim == 256


def test_captions_find_their_scene_class(encoder, scenes):
    images = encoder.encode_images([load_rgb(r.path) for r in scenes])
    texts = encoder.encode_texts([r.captions[0] for r in scenes])
    assert np.allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-4)
    scores = texts @ images.T  # [captions, images]
    hits = int((scores.argmax(axis=1) == np.arange(len(scenes))).sum())
    # Random ranking would place about one of eight captions on its scene.
    assert hits >= 6, f"only {hits} of {len(scenes)} captions ranked their own scene first"


def test_image_encoding_is_batch_independent(encoder, scenes):
    images = [load_rgb(r.path) for r in scenes[:3]]
    together = encoder.encode_images(images)
    alone = np.stack([encoder.encode_images([image])[0] for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)
