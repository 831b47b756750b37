"""HarMA training losses: contrastive with identity positives plus adaptive triplet.

Both take L2-normalised features of a (gathered) batch where row ``i`` of the
image features and row ``i`` of the text features form a pair, and
``image_ids[i]`` names the image of pair ``i``. Pairs whose image ids match are
positives: captions of the same image are not pushed apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from model.config import LossConfig
from model.distributed import gather_features, gather_ids


def positive_mask(image_ids: torch.Tensor) -> torch.Tensor:
    """Return ``[batch, batch]`` booleans, True where two pairs share an image."""
    return image_ids[:, None] == image_ids[None, :]


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     image_ids: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy with soft targets over all same-image pairs.

    Each row of the target matrix spreads probability 1 evenly over the row's
    positives, then ``(CE(image->text) + CE(text->image)) / 2``.
    """
    logits = logit_scale * image_features @ text_features.T  # [batch, batch]
    positives = positive_mask(image_ids).to(logits.dtype)
    targets = positives / positives.sum(dim=1, keepdim=True)
    image_to_text = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    text_to_image = -(targets.T * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def adaptive_triplet_loss(image_features: torch.Tensor, text_features: torch.Tensor, image_ids: torch.Tensor,
                          *, margin: float = 0.2, gamma: float = 2.0, mask_same_image_negatives: bool = True,
                          normalize: bool = False) -> torch.Tensor:
    """Weighted triplet loss over cosine scores, summed over negatives in both directions and halved.

    For each positive pair (i, j) and each negative k, the cost is
    ``c = max(0, margin + s_negative - s_positive)`` and its weight is
    ``(1 - exp(-c)) ** gamma``, so hard negatives dominate and easy ones vanish.
    Positives are same-image pairs, and those pairs are removed from the
    negatives. With ``mask_same_image_negatives=False`` only the diagonal is
    positive and every off-diagonal pair is a negative, as in the official
    code. ``normalize`` divides the sum by the number of positive pairs.
    """
    scores = image_features @ text_features.T  # [images, texts]
    batch = scores.shape[0]
    eye = torch.eye(batch, dtype=torch.bool, device=scores.device)
    positives = positive_mask(image_ids) if mask_same_image_negatives else eye
    negatives = ~positives
    pos_rows, pos_cols = positives.nonzero(as_tuple=True)
    positive_scores = scores[pos_rows, pos_cols][:, None]  # [pairs, 1]

    # image -> text: anchor image i, positive text j, negative texts k.
    cost_texts = F.relu(margin + scores[pos_rows] - positive_scores) * negatives[pos_rows]  # [pairs, texts]
    # text -> image: anchor text j, positive image i, negative images k.
    cost_images = F.relu(margin + scores.T[pos_cols] - positive_scores) * negatives.T[pos_cols]  # [pairs, images]
    total = _weighted(cost_texts, gamma).sum() + _weighted(cost_images, gamma).sum()
    loss = total / 2
    if normalize:
        loss = loss / max(len(pos_rows), 1)
    return loss


def _weighted(cost: torch.Tensor, gamma: float) -> torch.Tensor:
    return (1 - torch.exp(-cost)) ** gamma * cost


@dataclass
class LossOutput:
    total: torch.Tensor
    contrastive: torch.Tensor
    triplet: torch.Tensor


class HarMALoss(nn.Module):
    """Total loss = contrastive + adaptive triplet, after gathering features across ranks."""

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                image_ids: torch.Tensor, logit_scale: torch.Tensor) -> LossOutput:
        image_features = gather_features(image_features)
        text_features = gather_features(text_features)
        image_ids = gather_ids(image_ids)
        contrastive = contrastive_loss(image_features, text_features, image_ids, logit_scale)
        triplet = adaptive_triplet_loss(
            image_features, text_features, image_ids,
            margin=self.config.margin, gamma=self.config.gamma,
            mask_same_image_negatives=self.config.mask_same_image_negatives,
            normalize=self.config.normalize_triplet,
        )
        total = self.config.contrastive_weight * contrastive + self.config.triplet_weight * triplet
        return LossOutput(total=total, contrastive=contrastive, triplet=triplet)
