"""PyTorch datasets of image-caption pairs for training and evaluation.

A missing or corrupt image is handled by ``on_bad_image``: ``"skip"`` drops the
sample with a warning and counts it (the count reaches the training log
through each batch), ``"fail"`` raises ``DataError`` naming the file.
"""

from __future__ import annotations

import logging
import random
from typing import Callable, Optional, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from model.data.annotations import ImageRecord
from model.data.captions import clean_caption
from model.data.transforms import to_rgb
from model.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

BAD_IMAGE_POLICIES = ("skip", "fail")


def load_rgb(path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return to_rgb(image)


class PairDataset(Dataset):
    """Training pairs: one sample per caption, or one random caption per image.

    ``captions_per_epoch="all"`` yields every caption once per epoch, as the
    official recipe does. ``"one"`` yields each image once with a random
    caption, so an epoch of UCM-Captions costs a fifth as much.
    """

    def __init__(self, records: Sequence[ImageRecord], transform: Callable, tokenizer: Callable,
                 *, captions_per_epoch: str = "all", on_bad_image: str = "skip", seed: int = 0):
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
        if captions_per_epoch not in ("all", "one"):
            raise ConfigError(f"captions_per_epoch must be 'all' or 'one', got {captions_per_epoch!r}")
        self.records = [r for r in records if r.captions]
        if not self.records:
            raise DataError("no training images with captions")
        self.transform = transform
        self.tokenizer = tokenizer
        self.on_bad_image = on_bad_image
        self.captions_per_epoch = captions_per_epoch
        self.seed = seed
        self.epoch = 0
        self.samples = [(i, c) for i, r in enumerate(self.records) for c in range(len(r.captions))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples) if self.captions_per_epoch == "all" else len(self.records)

    def __getitem__(self, index: int) -> Optional[dict]:
        if self.captions_per_epoch == "all":
            record_index, caption_index = self.samples[index]
        else:
            record_index = index
            rng = random.Random(self.seed * 1_000_003 + self.epoch * 10_007 + index)
            caption_index = rng.randrange(len(self.records[index].captions))
        record = self.records[record_index]
        image = _read_or_policy(record, self.on_bad_image)
        if image is None:
            return None
        tokens = self.tokenizer([clean_caption(record.captions[caption_index])])[0]
        return {"image": self.transform(image), "tokens": tokens, "image_id": record_index}


class ImageDataset(Dataset):
    """Evaluation images with the test transform; ``index`` keeps each image's position."""

    def __init__(self, records: Sequence[ImageRecord], transform: Callable, *, on_bad_image: str = "fail"):
        self.records = list(records)
        self.transform = transform
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Optional[dict]:
        image = _read_or_policy(self.records[index], self.on_bad_image)
        if image is None:
            return None
        return {"image": self.transform(image), "index": index}


def _read_or_policy(record: ImageRecord, policy: str) -> Optional[Image.Image]:
    try:
        return load_rgb(record.path)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as error:
        if policy == "fail":
            raise DataError(f"cannot read image {record.path} (id {record.id}): {error}") from error
        logger.warning("skipping unreadable image %s (id %s): %s", record.path, record.id, error)
        return None


def collate_skipping(samples: list[Optional[dict]]) -> dict:
    """Stack the good samples of a batch and count the skipped ones under ``"skipped"``."""
    good = [s for s in samples if s is not None]
    batch: dict = {"skipped": len(samples) - len(good)}
    if not good:
        return batch
    for key in good[0]:
        values = [s[key] for s in good]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.tensor(values)
    return batch
