"""Evaluation job: encode a split's images and captions and report retrieval recall.

Usage::

    harma-evaluate --checkpoint model/pretrained/default \\
        --annotations data/ucm_captions/annotations.json --split test --output runs/eval.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.data.annotations import ImageRecord, read_annotations
from model.data.captions import clean_caption
from model.data.datasets import ImageDataset, collate_skipping
from model.data.transforms import build_test_transform
from model.errors import DataError, HarMAError
from model.harma import HarMAModel
from model.metrics import format_table, retrieval_metrics, unique_texts

logger = logging.getLogger(__name__)


@torch.inference_mode()
def encode_split(model: HarMAModel, records: Sequence[ImageRecord], *, batch_size: int = 64,
                 num_workers: int = 2, device: str = "cpu") -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Return image features, caption features, cleaned caption texts and each caption's image index."""
    model.eval()
    transform = build_test_transform(model.image_size, model.image_mean, model.image_std)
    loader = DataLoader(ImageDataset(records, transform), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_skipping, persistent_workers=False)
    image_features = []
    for batch in tqdm(loader, desc="encode images", unit="batch", leave=False, disable=None):
        image_features.append(model.encode_image(batch["image"].to(device)).float().cpu())
    texts = [clean_caption(c) for r in records for c in r.captions]
    caption_image = np.array([i for i, r in enumerate(records) for _ in r.captions], dtype=np.int64)
    if not texts:
        raise DataError("the evaluation split has no captions")
    distinct, inverse = unique_texts(texts)
    distinct_features = []
    for start in range(0, len(distinct), batch_size):
        tokens = model.tokenizer(distinct[start:start + batch_size]).to(device)
        distinct_features.append(model.encode_text(tokens).float().cpu())
    caption_features = torch.cat(distinct_features).numpy()[inverse]
    return torch.cat(image_features).numpy(), caption_features, texts, caption_image


def evaluate_model(model: HarMAModel, records: Sequence[ImageRecord], **kwargs) -> dict[str, float]:
    start = time.perf_counter()
    images, captions, texts, caption_image = encode_split(model, records, **kwargs)
    metrics = retrieval_metrics(images, captions, texts, caption_image)
    logger.info("evaluated %d images and %d captions in %.1f s: mR %.2f",
                len(records), len(texts), time.perf_counter() - start, metrics["mR"])
    return metrics


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harma-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default",
                        help="adapter checkpoint directory, 'default' for the shipped model, or 'tiny-vit' for a smoke test")
    parser.add_argument("--annotations", type=Path, required=True, help="annotation file (list or release form)")
    parser.add_argument("--image-root", type=Path, default=None, help="image folder for release-form files")
    parser.add_argument("--split", default="test", help="split to evaluate (list-form files); default: test")
    parser.add_argument("--batch-size", type=int, default=64, help="images per encoder batch")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--output", type=Path, default=None, help="write the metrics as JSON to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    from model.encoder import load_encoder

    try:
        encoder = load_encoder(args.checkpoint)
        records = read_annotations(args.annotations, image_root=args.image_root, split=args.split)
        if not records:
            raise DataError(f"no images of split {args.split!r} in {args.annotations}")
        metrics = evaluate_model(encoder.model, records, batch_size=args.batch_size,
                                 num_workers=args.num_workers, device=str(encoder.device))
    except HarMAError as error:
        logger.error("%s", error)
        return 2
    print(format_table({args.checkpoint: metrics}))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {"checkpoint": args.checkpoint, "annotations": str(args.annotations), "split": args.split,
                   "images": len(records), "metrics": metrics}
        args.output.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
