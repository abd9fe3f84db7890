"""The settings of the shared training loop (`bastion.train.loop.fit`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bastion.errors import InputError

__all__ = ["FitConfig"]


@dataclass(frozen=True)
class FitConfig:
    """Settings of the training loop (the method's own hyperparameters live in its `Trainer`).

    Args:
        epochs: Passes over the training data.
        batch_size: Images per optimizer step and process (under torchrun the effective batch is
            `batch_size` times the number of processes).
        optimizer: "sgd" (momentum) or "adam".
        lr: Peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        schedule: "piecewise", "cyclic", "cosine" or "constant"; None takes the method's default.
        ramp_epochs: Epochs over which eps grows linearly from 0 (0: no ramp-up).
        augment: "auto", "none", "crop" or "crop-flip" (see `resolve_augment`).
        seed: Seed of the loop's `torch.Generator` (order, augmentation, attacks) and of dropout.
        check_size: Held-out images checked after each epoch (0: no check).
        check_steps: PGD steps of that check.
        keep_best: Keep the epoch of best held-out robust accuracy; None takes the method's default.
        collapse_drop: Warn when held-out robust accuracy falls this far below its best.
        amp: bfloat16 autocast and channels_last; None turns them on exactly on CUDA.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str | None = None
    ramp_epochs: float = 0.0
    augment: str = "auto"
    seed: int = 0
    check_size: int = 500
    check_steps: int = 10
    keep_best: bool | None = None
    collapse_drop: float = 0.2
    amp: bool | None = None

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("check_size", 0), ("check_steps", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (math.isfinite(self.ramp_epochs) and self.ramp_epochs >= 0):
            raise InputError(f"ramp_epochs must be >= 0, got {self.ramp_epochs}")
