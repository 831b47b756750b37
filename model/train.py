"""Training job for HarMA adapters.

Usage::

    harma-train --config model/configs/ucm_default.yaml --set epochs=5
    torchrun --nproc-per-node 2 -m model.train --config ...   # DDP

Writes to ``output_dir``: the resolved ``train_config.json``, ``metrics.jsonl``
(one line per epoch), ``training_curves.png``, ``best/`` (the epoch with the
highest validation mR) and ``last/`` (adapters plus ``training_state.pt`` for
resuming). Only rank 0 writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from model import distributed as dist_utils
from model.backbone import build_backbone
from model.checkpoint import load_trained_state, save_adapters
from model.data.annotations import read_annotations
from model.data.datasets import PairDataset, collate_skipping
from model.data.transforms import build_train_transform
from model.errors import DataError, HarMAError
from model.evaluate import evaluate_model
from model.harma import HarMAModel
from model.losses import HarMALoss
from model.training.config import TrainConfig, load_train_config
from model.training.loop import train_one_epoch
from model.training.optim import build_optimizer, build_scheduler
from model.training.plot import plot_history

logger = logging.getLogger(__name__)

STATE_NAME = "training_state.pt"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: TrainConfig) -> HarMAModel:
    backbone = build_backbone(config.backbone)
    return HarMAModel(backbone, config.harma, temperature_init=config.loss.temperature_init,
                      use_adapters=config.use_adapters)


def _loaders(config: TrainConfig, model: HarMAModel):
    train_records = read_annotations(Path(config.train_annotations), split=config.train_split,
                                     image_root=_optional_path(config.image_root))
    val_path = Path(config.val_annotations or config.train_annotations)
    val_records = read_annotations(val_path, split=config.val_split, image_root=_optional_path(config.image_root))
    if not train_records or not val_records:
        raise DataError(f"empty split: {len(train_records)} train and {len(val_records)} validation images")
    transform = build_train_transform(model.image_size, model.image_mean, model.image_std)
    dataset = PairDataset(train_records, transform, model.tokenizer, captions_per_epoch=config.captions_per_epoch,
                          on_bad_image=config.on_bad_image, seed=config.seed)
    sampler = DistributedSampler(dataset, seed=config.seed, drop_last=True) if dist_utils.is_distributed() else None
    generator = torch.Generator()
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=config.num_workers, collate_fn=collate_skipping, drop_last=True,
                        generator=generator, persistent_workers=False)
    return dataset, loader, val_records


def _set_epoch(loader: DataLoader, dataset: PairDataset, epoch: int, seed: int) -> None:
    """Seed shuffling and augmentation from (seed, epoch) so a resumed run repeats the same epochs."""
    dataset.set_epoch(epoch)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(seed * 1000 + epoch)
    torch.manual_seed(seed * 1000 + epoch + 1)


def _optional_path(value: Optional[str]) -> Optional[Path]:
    return Path(value) if value else None


def run_training(config: TrainConfig) -> dict:
    """Train, validate every epoch and keep the best epoch; return the final summary."""
    distributed = dist_utils.init_from_environment()
    seed_everything(config.seed + dist_utils.rank())
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    output = Path(config.output_dir)
    model = build_model(config).to(device)
    trainable, total = model.parameter_counts()
    dataset, loader, val_records = _loaders(config, model)
    steps_per_epoch = len(loader) if config.max_steps_per_epoch is None else min(len(loader), config.max_steps_per_epoch)
    optimizer = build_optimizer(model, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas, eps=config.eps)
    scheduler = build_scheduler(optimizer, total_steps=steps_per_epoch * config.epochs,
                                warmup_fraction=config.warmup_fraction)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and config.precision == "fp16" else None
    history, best, start_epoch = _maybe_resume(config, output, model, optimizer, scheduler, device)
    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if distributed else model
    loss_fn = HarMALoss(config.loss)
    if dist_utils.is_main_process():
        output.mkdir(parents=True, exist_ok=True)
        (output / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str))
        logger.info("training %d of %d parameters on %s, %d steps per epoch, %d epochs, world size %d",
                    trainable, total, device, steps_per_epoch, config.epochs, dist_utils.world_size())
    for epoch in range(start_epoch, config.epochs):
        _set_epoch(loader, dataset, epoch, config.seed + dist_utils.rank())
        stats = train_one_epoch(wrapped, loss_fn, loader, optimizer, scheduler, epoch=epoch, device=device,
                                precision=config.precision, max_steps=config.max_steps_per_epoch, scaler=scaler)
        if dist_utils.is_main_process():
            best = _finish_epoch(config, output, model, optimizer, scheduler, val_records, stats, epoch, history, best,
                                 device)
        if distributed:
            torch.distributed.barrier()
    summary = {"best_epoch": best["epoch"], "best_val_mR": best["mR"], "trainable_parameters": trainable,
               "total_parameters": total, "history": history}
    if dist_utils.is_main_process():
        (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _finish_epoch(config, output, model, optimizer, scheduler, val_records, stats, epoch, history, best, device):
    metrics = evaluate_model(model, val_records, batch_size=config.eval_batch_size,
                             num_workers=config.num_workers, device=str(device))
    row = {"epoch": epoch, "train_loss": stats.loss, "train_contrastive": stats.contrastive,
           "train_triplet": stats.triplet, "epoch_seconds": stats.seconds,
           "samples_per_second": stats.samples_per_second, "skipped_images": stats.skipped,
           "temperature": float(model.temperature), "val_mR": metrics["mR"], "val": metrics}
    history.append(row)
    logger.info("epoch %d: loss %.4f in %.1f s (%.1f samples/s), validation mR %.2f",
                epoch, stats.loss, stats.seconds, stats.samples_per_second, metrics["mR"])
    with open(output / "metrics.jsonl", "a") as stream:
        stream.write(json.dumps(row) + "\n")
    extra = {"epoch": epoch, "val_mR": metrics["mR"], "train_config": config.to_dict()}
    if metrics["mR"] > best["mR"]:
        best = {"epoch": epoch, "mR": metrics["mR"]}
        save_adapters(model, output / "best", config.backbone, extra=json.loads(json.dumps(extra, default=str)))
    save_adapters(model, output / "last", config.backbone, extra=json.loads(json.dumps(extra, default=str)))
    # One file contains everything a resume needs, so a kill between two writes
    # can never pair the adapters of one epoch with the optimizer of another.
    state = {"epoch": epoch, "adapters": model.adapter_state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "history": history, "best": best}
    tmp = output / "last" / f".{STATE_NAME}.tmp"
    torch.save(state, tmp)
    with open(tmp, "rb") as stream:
        os.fsync(stream.fileno())
    tmp.replace(output / "last" / STATE_NAME)
    plot_history(history, output / "training_curves.png")
    return best


def _maybe_resume(config, output, model, optimizer, scheduler, device):
    state_path = output / "last" / STATE_NAME
    if not (config.resume and state_path.is_file()):
        return [], {"epoch": -1, "mR": float("-inf")}, 0
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    load_trained_state(model, state["adapters"], source=str(state_path))
    model.to(device)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    # Drop metric lines of an epoch that was cut off before its state was saved.
    if dist_utils.is_main_process():
        lines = "".join(json.dumps(row) + "\n" for row in state["history"])
        (output / "metrics.jsonl").write_text(lines)
    logger.info("resumed from %s after epoch %d (best validation mR %.2f at epoch %d)",
                state_path, state["epoch"], state["best"]["mR"], state["best"]["epoch"])
    return state["history"], state["best"], state["epoch"] + 1


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harma-train", description="Train HarMA adapters.")
    parser.add_argument("--config", type=Path, default=None, help="YAML file with TrainConfig fields")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, for example --set epochs=3 --set harma.mms_towers=text")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    # Under torchrun only rank 0 logs progress; other ranks report warnings and errors.
    level = logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    try:
        config = load_train_config(args.config, args.overrides)
        summary = run_training(config)
    except HarMAError as error:
        logger.error("%s", error)
        return 2
    if dist_utils.is_main_process():
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
