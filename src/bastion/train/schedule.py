"""Optimizers, learning-rate schedules and the eps ramp-up of the training loop."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from bastion.errors import InputError

__all__ = ["OPTIMIZERS", "SCHEDULES", "build_optimizer", "build_schedule", "ramped_eps"]

OPTIMIZERS = ("sgd", "adam")


def _piecewise(t: float) -> float:
    """Decay by 10 at 50% and 75% of training (Madry et al. 2018; Rice et al. 2020, arXiv:2002.11569)."""
    return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01


def _cyclic(t: float) -> float:
    """One triangle: 0 to the peak at 40% of training, back to 0 (Wong et al. 2020; Smith & Topin 2017)."""
    return t / 0.4 if t < 0.4 else max(0.0, (1.0 - t) / 0.6)


def _cosine(t: float) -> float:
    """Cosine annealing to zero (Loshchilov & Hutter 2017, arXiv:1608.03983, without restarts)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda t: 1.0,
    "piecewise": _piecewise,
    "cyclic": _cyclic,
    "cosine": _cosine,
}


def build_optimizer(
    params: Iterable[nn.Parameter], name: str, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """SGD with (heavy-ball) momentum, or Adam (Kingma & Ba 2015, arXiv:1412.6980)."""
    if not (math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be > 0, got {lr}")
    if not weight_decay >= 0:
        raise InputError(f"weight_decay must be >= 0, got {weight_decay}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise InputError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def build_schedule(optimizer: torch.optim.Optimizer, name: str, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule: the learning rate is lr * SCHEDULES[name](step / total_steps)."""
    if name not in SCHEDULES:
        raise InputError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    shape, total = SCHEDULES[name], max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: shape(step / total))


def ramped_eps(eps: float, progress: float, ramp_epochs: float) -> float:
    """Eps grown linearly from 0 over the first `ramp_epochs` epochs (`progress` in epochs), then constant.

    A ramp-up keeps early adversarial training from stalling at the trivial solution on large
    budgets such as MNIST at 0.3 (used by Gowal et al. 2018, arXiv:1810.12715, and Wong et al. 2020).
    """
    if ramp_epochs <= 0:
        return eps
    return eps * min(1.0, progress / ramp_epochs)
