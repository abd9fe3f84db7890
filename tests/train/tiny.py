"""A tiny MLP factory for the training tests (loadable as `path/tiny.py:mlp`)."""

from __future__ import annotations

import torch
from torch import nn


def mlp() -> nn.Module:
    """784 -> 32 -> 10, seeded by the caller's RNG."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def seeded_mlp(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return mlp()
