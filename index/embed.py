"""Parallel decoding and batched image embedding.

DataLoader workers read, hash, decode and preprocess files while the main
process runs the encoder on the previous batch, so decoding overlaps the
forward pass. Results are written to resumable shards as they arrive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from index.decode import DecodeConfig, DecodeError, read_image_file
from index.errors import BuildCancelled
from index.shards import EmbeddedFile, ShardStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedTask:
    path: Path
    sha256: str  # content hash measured before embedding


class _ArchiveDataset(Dataset):
    def __init__(self, tasks: list[EmbedTask], preprocess: Callable, decode_config: DecodeConfig):
        self.tasks = tasks
        self.preprocess = preprocess
        self.decode_config = decode_config

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, position: int) -> tuple[int, Optional[torch.Tensor], dict]:
        task = self.tasks[position]
        try:
            decoded = read_image_file(task.path, self.decode_config)
        except DecodeError as error:
            return position, None, {"error": str(error)}
        if decoded.sha256 != task.sha256:
            return position, None, {"error": "file changed while the build was running; run update again"}
        pixels = self.preprocess(decoded.image)  # [3, size, size]
        return position, pixels, {"width": decoded.width, "height": decoded.height, "geo": decoded.geo}


def _collate(samples: list) -> tuple[list[int], Optional[torch.Tensor], list[dict]]:
    positions = [sample[0] for sample in samples]
    tensors = [sample[1] for sample in samples if sample[1] is not None]
    pixels = torch.stack(tensors) if tensors else None  # [decoded, 3, size, size]
    return positions, pixels, [sample[2] for sample in samples]


@dataclass
class EmbedOptions:
    batch_size: int
    num_workers: int
    shard_size: int
    decode_config: DecodeConfig


def embed_files(tasks: list[EmbedTask], encoder, shards: ShardStore, options: EmbedOptions, *,
                on_batch: Optional[Callable[[int], None]] = None,
                should_stop: Optional[Callable[[], bool]] = None) -> dict[str, EmbeddedFile]:
    """Embed ``tasks`` and return results by sha256; raise BuildCancelled on request."""
    results: dict[str, EmbeddedFile] = {}
    if not tasks:
        return results
    loader = DataLoader(
        _ArchiveDataset(tasks, encoder.preprocess, options.decode_config),
        batch_size=options.batch_size, num_workers=options.num_workers, collate_fn=_collate,
        pin_memory=torch.cuda.is_available(), persistent_workers=False,
        prefetch_factor=4 if options.num_workers > 0 else None)
    pending: list[EmbeddedFile] = []
    started = time.perf_counter()
    with tqdm(total=len(tasks), desc="embed images", unit="img", dynamic_ncols=True) as bar:
        for positions, pixels, metas in loader:
            vectors = encoder.encode_image_tensors(pixels) if pixels is not None else None  # [decoded, dim]
            decoded_row = 0
            for position, meta in zip(positions, metas):
                item = EmbeddedFile(sha256=tasks[position].sha256, vector=None, **meta)
                if item.error is None:
                    item.vector = vectors[decoded_row]
                    decoded_row += 1
                results[item.sha256] = item
                pending.append(item)
            if len(pending) >= options.shard_size:
                shards.write(pending)
                pending = []
            bar.update(len(positions))
            if on_batch is not None:
                on_batch(len(positions))
            if should_stop is not None and should_stop():
                shards.write(pending)
                raise BuildCancelled(f"build stopped after {len(results)} of {len(tasks)} images; run it again to resume")
    shards.write(pending)
    elapsed = time.perf_counter() - started
    logger.info("embedded %d files in %.1f s (%.1f images/s)", len(tasks), elapsed, len(tasks) / max(elapsed, 1e-9))
    return results
