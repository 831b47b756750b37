"""Helpers for DistributedDataParallel training under torchrun."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def init_from_environment(backend: str | None = None) -> bool:
    """Join the process group that torchrun describes in the environment.

    Returns False (and does nothing) when the process was not started by
    torchrun. ``backend`` defaults to NCCL with CUDA and gloo without.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    if not is_distributed():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward sums the gradients of all ranks and keeps the local slice.

    Every rank computes the loss over the gathered batch, so the gradient of
    the local features is the sum of what each rank's loss sends back to them.
    Written with all_reduce because the gloo backend has no reduce_scatter.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank = dist.get_rank()
        ctx.world = dist.get_world_size()
        ctx.local = tensor.shape[0]
        sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(ctx.world)]
        dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
        ctx.sizes = [int(s.item()) for s in sizes]
        if len(set(ctx.sizes)) != 1:
            raise RuntimeError(f"all ranks must contribute the same batch size, got {ctx.sizes}")
        gathered = [torch.empty_like(tensor) for _ in range(ctx.world)]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local
        return grad[start:start + ctx.local]


def gather_features(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks in rank order; gradients reach the local slice."""
    if not is_distributed() or world_size() == 1:
        return tensor
    return _GatherWithGradient.apply(tensor)


def gather_ids(ids: torch.Tensor) -> torch.Tensor:
    """Concatenate integer ids from all ranks in rank order (no gradient)."""
    if not is_distributed() or world_size() == 1:
        return ids
    gathered = [torch.empty_like(ids) for _ in range(world_size())]
    dist.all_gather(gathered, ids.contiguous())
    return torch.cat(gathered, dim=0)
