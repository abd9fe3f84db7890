"""Normalization as the model's first layer, so attacks always work in pixel space [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bastion.errors import InputError

__all__ = ["Normalized"]


class Normalized(nn.Module):
    """Wraps a model that expects standardized inputs: forward(x) = model((x - mean) / std).

    Putting the normalization inside the model (as locuslab/smoothing does) keeps the threat
    model in pixel units: an eps of 8/255 means 8 grey levels, whatever the model's preprocessing.

    Args:
        model: The network that expects standardized inputs.
        mean: Per-channel means (a single value applies to every channel).
        std: Per-channel standard deviations, all > 0.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise InputError(f"--mean has {len(mean)} values but --std has {len(std)}")
        if any(not s > 0 for s in std):
            raise InputError(f"every std must be > 0, got {list(std)}")
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Standardize `x` (B, C, H, W) in [0, 1], then run the wrapped model."""
        mean, std = self.get_buffer("mean").to(x.dtype), self.get_buffer("std").to(x.dtype)
        channels = mean.shape[1]
        if channels != 1 and x.shape[1] != channels:
            raise InputError(f"--mean/--std give {channels} channels but the data has {x.shape[1]}")
        out: Tensor = self.model((x - mean) / std)
        return out
