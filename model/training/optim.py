"""AdamW with warm-up and linear decay, and the parameter groups it trains."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from model.harma import HarMAModel


def build_optimizer(model: HarMAModel, *, lr: float, weight_decay: float,
                    betas: tuple[float, float], eps: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases, norms, gates and the temperature get no decay.

    Those are exactly the parameters with fewer than two dimensions.
    """
    decay, no_decay = [], []
    for parameter in model.trainable_parameters():
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def build_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_fraction: float) -> LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of the steps, then linear decay to zero."""
    warmup_steps = int(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = max(total_steps - warmup_steps, 1)
        return max(0.0, (total_steps - step) / remaining)

    return LambdaLR(optimizer, factor)
