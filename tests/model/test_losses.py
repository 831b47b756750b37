"""Loss values on small cases worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from model.config import LossConfig
from model.losses import HarMALoss, adaptive_triplet_loss, contrastive_loss


def _unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


def test_contrastive_two_pairs_by_hand():
    images = _unit([1.0, 0.0], [0.0, 1.0])
    texts = _unit([1.0, 0.0], [0.0, 1.0])
    # logits = 2 * identity, so each row is softmax([2, 0]) with the target on the diagonal.
    loss = contrastive_loss(images, texts, torch.tensor([0, 1]), torch.tensor(2.0, dtype=torch.float64))
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert float(loss) == pytest.approx(expected, rel=1e-9)


def test_contrastive_same_image_targets_are_split():
    images = _unit([1.0, 0.0], [1.0, 0.0])  # two captions of one image
    texts = _unit([1.0, 0.0], [0.0, 1.0])
    loss = contrastive_loss(images, texts, torch.tensor([7, 7]), torch.tensor(1.0, dtype=torch.float64))
    # Every row has targets [0.5, 0.5].
    # image->text rows: logits [1, 0]; text->image rows: [1, 1] then [0, 0].
    log_softmax_10 = torch.log_softmax(torch.tensor([1.0, 0.0], dtype=torch.float64), 0)
    image_to_text = float(-(0.5 * log_softmax_10).sum())
    text_to_image = math.log(2)
    assert float(loss) == pytest.approx((image_to_text + text_to_image) / 2, rel=1e-9)


def test_triplet_single_violation_by_hand():
    # Scores: s(i0,t0)=1, s(i0,t1)=0.9, s(i1,t0)=0, s(i1,t1)=1 with margin 0.2.
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    texts = torch.tensor([[1.0, 0.0], [0.9, 0.0]], dtype=torch.float64)
    texts[1, 1] = 1.0
    scores = images @ texts.T
    assert scores.tolist() == [[1.0, 0.9], [0.0, 1.0]]
    loss = adaptive_triplet_loss(images, texts, torch.tensor([0, 1]), margin=0.2, gamma=2.0)
    # Only image 0 against text 1 violates: c = 0.2 + 0.9 - 1 = 0.1.
    # Text 1 against image 0 as negative: c = 0.2 + 0.9 - 1.0 = 0.1 as well.
    cost = 0.1
    weighted = (1 - math.exp(-cost)) ** 2 * cost
    assert float(loss) == pytest.approx((weighted + weighted) / 2, rel=1e-9)


def test_triplet_easy_negatives_cost_nothing():
    images = _unit([1.0, 0.0], [0.0, 1.0])
    loss = adaptive_triplet_loss(images, images.clone(), torch.tensor([0, 1]), margin=0.2)
    assert float(loss) == 0.0


def test_triplet_masks_same_image_pairs_by_default():
    images = _unit([1.0, 0.0], [1.0, 0.0])  # two captions of one image
    texts = _unit([1.0, 0.0], [0.6, 0.8])
    ids = torch.tensor([3, 3])
    assert float(adaptive_triplet_loss(images, texts, ids)) == 0.0
    official = adaptive_triplet_loss(images, texts, ids, mask_same_image_negatives=False)
    # Diagonal-only positives: s = [[1, .6], [1, .6]]. Pair (0,0) vs text 1: c = 0.2 + 0.6 - 1 < 0.
    # Pair (1,1) vs text 0: c = 0.2 + 1 - 0.6 = 0.6; vs image 0 in the text direction: 0.2 + 0.6 - 0.6 = 0.2.
    # Pair (0,0) vs image 1 in the text direction: c = 0.2 + 1 - 1 = 0.2.
    def weighted(cost):
        return (1 - math.exp(-cost)) ** 2 * cost
    expected = (weighted(0.6) + weighted(0.2) + weighted(0.2)) / 2
    assert float(official) == pytest.approx(expected, rel=1e-6)


def test_triplet_normalize_divides_by_positive_pairs():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    texts = torch.tensor([[1.0, 0.0], [0.9, 1.0]], dtype=torch.float64)
    ids = torch.tensor([0, 1])
    total = adaptive_triplet_loss(images, texts, ids)
    assert float(adaptive_triplet_loss(images, texts, ids, normalize=True)) == pytest.approx(float(total) / 2)


def test_total_loss_adds_both_terms():
    torch.manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    ids = torch.tensor([0, 0, 1, 2, 3, 3])
    output = HarMALoss(LossConfig())(images, texts, ids, torch.tensor(1 / 0.07))
    assert float(output.total) == pytest.approx(float(output.contrastive + output.triplet), rel=1e-6)
    assert float(output.contrastive) > 0
