"""One training epoch: forward, HarMA loss, backward, optimizer and scheduler steps."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.distributed import is_main_process
from model.losses import HarMALoss

logger = logging.getLogger(__name__)

LOG_EVERY_STEPS = 20


@dataclass
class EpochStats:
    loss: float
    contrastive: float
    triplet: float
    steps: int
    samples: int
    skipped: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


def autocast_context(device: torch.device, precision: str):
    """Mixed precision on CUDA only; CPU runs stay in fp32."""
    # NOTE: the CUDA branch has never run in this project's tests, which have no GPU.
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type="cuda", dtype=dtype)


def train_one_epoch(model, loss_fn: HarMALoss, loader: DataLoader, optimizer, scheduler, *,
                    epoch: int, device: torch.device, precision: str, max_steps: int | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> EpochStats:
    """Train for one pass over ``loader``; ``model`` may be wrapped in DistributedDataParallel."""
    model.train()
    totals = {"loss": 0.0, "contrastive": 0.0, "triplet": 0.0}
    steps = samples = skipped = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not is_main_process() or None, leave=False)
    for batch in bar:
        skipped += batch["skipped"]
        if "image" not in batch:
            continue
        images = batch["image"].to(device, non_blocking=True)  # [batch, 3, size, size]
        tokens = batch["tokens"].to(device, non_blocking=True)  # [batch, context_length]
        image_ids = batch["image_id"].to(device)
        with autocast_context(device, precision):
            image_features, text_features = model(images, tokens)
        harma = model.module if hasattr(model, "module") else model
        output = loss_fn(image_features.float(), text_features.float(), image_ids, harma.scale())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(output.total).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            output.total.backward()
            optimizer.step()
        scheduler.step()
        steps += 1
        samples += images.shape[0]
        for key in totals:
            totals[key] += float(getattr(output, "total" if key == "loss" else key).detach())
        rate = samples / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{totals['loss'] / steps:.3f}", samples_per_s=f"{rate:.1f}")
        if steps % LOG_EVERY_STEPS == 0 and is_main_process():
            logger.info("epoch %d step %d: loss %.4f, %.1f samples/s, lr %.2e, temperature %.4f",
                        epoch, steps, totals["loss"] / steps, rate, scheduler.get_last_lr()[0],
                        float(harma.temperature))
        if max_steps is not None and steps >= max_steps:
            break
    if skipped:
        logger.warning("epoch %d skipped %d unreadable images", epoch, skipped)
    seconds = time.perf_counter() - start
    steps_or_one = max(steps, 1)
    return EpochStats(
        loss=totals["loss"] / steps_or_one, contrastive=totals["contrastive"] / steps_or_one,
        triplet=totals["triplet"] / steps_or_one, steps=steps, samples=samples, skipped=skipped, seconds=seconds,
    )
