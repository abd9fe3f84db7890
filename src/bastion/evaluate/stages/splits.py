"""Training and held-out points of the stages that learn one perturbation (patch, universal) and then measure it.

Either the evaluated points are split in two (the first half trains, the second half measures), or
a separate training set is named by its data spec and every evaluated point is held out.
"""

from __future__ import annotations

import torch

from bastion.data import ImageSet, load_dataset
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext

__all__ = ["held_out_set", "training_set"]


def _halves(data: ImageSet) -> tuple[ImageSet, ImageSet]:
    if len(data) < 2:
        raise InputError("--data needs at least 2 points to split into training and held-out halves")
    half = len(data) // 2
    return data.subset(torch.arange(half)), data.subset(torch.arange(half, len(data)))


def training_set(ctx: EvalContext, spec: str | None, *, limit: int | None = None, subset_seed: int | None = None,
                 root: str | None = None) -> ImageSet:
    """The training images: the first half of `ctx.data` when `spec` is None, else the set `spec` names."""
    if spec is None:
        return _halves(ctx.data)[0]
    train = load_dataset(spec, root=root, limit=limit, seed=subset_seed)
    if train.shape != ctx.data.shape:
        raise InputError(f"the training images are shaped {train.shape}, the held-out images {ctx.data.shape}")
    return train


def held_out_set(ctx: EvalContext, split: bool) -> ImageSet:
    """The held-out images: the second half of `ctx.data` when it is `split`, else all of it."""
    return _halves(ctx.data)[1] if split else ctx.data
