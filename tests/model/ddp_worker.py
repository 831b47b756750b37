"""Worker for the DDP equivalence test: one training step on this rank's slice of a global batch."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from model.config import LossConfig
from model.losses import HarMALoss
from tests.model.helpers import perturb_adapters, tiny_inputs, tiny_model

GLOBAL_BATCH = 6


def global_batch(model):
    images, tokens = tiny_inputs(model, batch=GLOBAL_BATCH, seed=3)
    image_ids = torch.tensor([0, 0, 1, 2, 3, 3])  # two pairs share an image on each rank
    return images, tokens, image_ids


def step_gradients(model, images, tokens, image_ids, wrapped=None):
    """Run one forward and backward pass and return the loss and the trained parameters' gradients."""
    wrapped = wrapped or model
    image_features, text_features = wrapped(images, tokens)
    output = HarMALoss(LossConfig())(image_features, text_features, image_ids, model.scale())
    output.total.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return float(output.total.detach()), grads


def build():
    torch.manual_seed(0)  # every process must build the same adapters
    model = tiny_model("tiny-vit")
    perturb_adapters(model, seed=5)
    model.train()
    return model


def main(output_path: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build()
    images, tokens, image_ids = global_batch(model)
    share = GLOBAL_BATCH // world
    local = slice(rank * share, (rank + 1) * share)
    wrapped = DistributedDataParallel(model)
    loss, grads = step_gradients(model, images[local], tokens[local], image_ids[local], wrapped=wrapped)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, output_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1])
