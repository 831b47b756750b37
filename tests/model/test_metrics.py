"""Recall metrics and tie handling on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from model.metrics import image_to_text_ranks, recall_table, retrieval_metrics, text_to_image_ranks


def test_text_to_image_ties_count_pessimistically():
    scores = np.array([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9]])
    ranks = text_to_image_ranks(scores, np.array([0, 2]))
    assert ranks.tolist() == [2, 2]


def test_image_to_text_uses_best_ground_truth():
    scores = np.array([[0.1, 0.9, 0.5, 0.7]])
    ranks = image_to_text_ranks(scores, [{2, 3}])
    assert ranks.tolist() == [2]


def test_image_to_text_tie_with_other_text_is_pessimistic():
    scores = np.array([[0.7, 0.7, 0.1]])
    assert image_to_text_ranks(scores, [{1}]).tolist() == [2]


def test_identical_captions_are_one_gallery_entry():
    # Two images share the caption "a farm"; image features equal the caption features.
    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    texts = ["a farm", "a farm", "a lake"]
    captions = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    caption_image = np.array([0, 1, 1])
    metrics = retrieval_metrics(images, captions, texts, caption_image)
    # Image 0's best text is "a farm", its own text: rank 1. Image 1 has "a lake": rank 1.
    assert metrics["i2t_R@1"] == 100.0
    # Text "a farm" of image 1 ranks image 0 first, so one of three text queries misses at R@1.
    assert metrics["t2i_R@1"] == pytest.approx(200 / 3)
    assert metrics["t2i_R@5"] == 100.0


def test_recall_table_mean_of_six():
    table = recall_table(np.array([1, 6, 11]), np.array([1, 1, 20, 3]))
    assert table["i2t_R@1"] == pytest.approx(100 / 3)
    assert table["i2t_R@10"] == pytest.approx(200 / 3)
    assert table["t2i_R@5"] == 75.0
    six = [table[k] for k in table if k != "mR"]
    assert table["mR"] == pytest.approx(sum(six) / 6)
