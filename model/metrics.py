"""Remote-sensing retrieval metrics: R@1/5/10 in both directions and their mean, mR.

Tie handling, fixed for every run:

* Captions with identical cleaned text are one gallery entry for
  image-to-text retrieval, and that entry counts as correct for every image
  that has the text among its captions. UCM-Captions gives whole classes the
  same five sentences, and no model can tell two copies of one string apart.
* Every remaining tie is counted pessimistically: an item scoring exactly the
  same as the best ground truth ranks ahead of it.

Image-to-text: an image's rank is that of its best-scoring ground-truth text.
Text-to-image: each caption (duplicates included) ranks its single source image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

RECALL_AT = (1, 5, 10)


def unique_texts(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Return the distinct texts in first-seen order and, per input, its index among them."""
    positions: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        inverse[i] = positions.setdefault(text, len(positions))
    return list(positions), inverse


def image_to_text_ranks(scores: np.ndarray, ground_truth: list[set[int]]) -> np.ndarray:
    """Return 1-based ranks; ``scores`` is ``[images, unique_texts]``."""
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for i, truth in enumerate(ground_truth):
        row = scores[i]
        truth_index = np.fromiter(truth, dtype=np.int64)
        best = row[truth_index].max()
        others = np.ones(row.shape[0], dtype=bool)
        others[truth_index] = False
        ranks[i] = 1 + int(np.count_nonzero(row[others] >= best))
    return ranks


def text_to_image_ranks(scores: np.ndarray, source_image: np.ndarray) -> np.ndarray:
    """Return 1-based ranks; ``scores`` is ``[captions, images]``."""
    rows = np.arange(scores.shape[0])
    truth_scores = scores[rows, source_image][:, None]
    at_least = (scores >= truth_scores).sum(axis=1)  # includes the truth itself
    return at_least.astype(np.int64)


def recall_table(image_to_text: np.ndarray, text_to_image: np.ndarray) -> dict[str, float]:
    result: dict[str, float] = {}
    for k in RECALL_AT:
        result[f"i2t_R@{k}"] = 100.0 * float(np.mean(image_to_text <= k))
    for k in RECALL_AT:
        result[f"t2i_R@{k}"] = 100.0 * float(np.mean(text_to_image <= k))
    result["mR"] = float(np.mean(list(result.values())))
    return result


def retrieval_metrics(image_features: np.ndarray, caption_features: np.ndarray,
                      caption_texts: Sequence[str], caption_image: np.ndarray) -> dict[str, float]:
    """Compute the metric table from unit feature vectors.

    ``caption_features[j]`` embeds ``caption_texts[j]``, a caption of image
    ``caption_image[j]``. Identical texts must have identical features (encode
    each distinct text once) so that their ties are exact.
    """
    distinct, inverse = unique_texts(caption_texts)
    first_row = np.zeros(len(distinct), dtype=np.int64)
    first_row[inverse[::-1]] = np.arange(len(inverse))[::-1]
    distinct_features = caption_features[first_row]
    ground_truth: list[set[int]] = [set() for _ in range(image_features.shape[0])]
    for caption, image in enumerate(caption_image):
        ground_truth[int(image)].add(int(inverse[caption]))
    i2t = image_to_text_ranks(image_features @ distinct_features.T, ground_truth)
    t2i = text_to_image_ranks(caption_features @ image_features.T, np.asarray(caption_image))
    return recall_table(i2t, t2i)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Render named metric dicts as a Markdown table."""
    columns = [f"i2t_R@{k}" for k in RECALL_AT] + [f"t2i_R@{k}" for k in RECALL_AT] + ["mR"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines)
