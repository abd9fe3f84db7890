"""Data augmentation inside the training loop: random crops (shifts) and horizontal flips, per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.errors import InputError

__all__ = ["AUGMENTATIONS", "augment", "resolve_augment"]

AUGMENTATIONS = ("auto", "none", "crop", "crop-flip")


def resolve_augment(name: str, shape: tuple[int, int, int]) -> tuple[int, bool]:
    """Turn an augmentation name into (crop padding, flip) for images of shape (C, H, W).

    "auto" shifts grayscale images (digits: flipping a 2 or a 7 changes what it is) by up to
    H / 14 pixels, and crops colour images with H / 8 padding plus a horizontal flip, the usual
    CIFAR-10 recipe (4 pixels at 32 x 32).
    """
    if name not in AUGMENTATIONS:
        raise InputError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENTATIONS)}")
    channels, height, _ = shape
    if name == "none":
        return 0, False
    if name == "auto":
        return (max(1, height // 14), False) if channels == 1 else (max(1, height // 8), True)
    return max(1, height // (14 if channels == 1 else 8)), name == "crop-flip"


def augment(x: Tensor, padding: int, flip: bool, generator: torch.Generator | None = None) -> Tensor:
    """Randomly crop each image of `x` (B, C, H, W) from a zero-padded copy, and flip half of them.

    Args:
        x: Images in [0, 1]; not modified.
        padding: Zero padding on each side; a crop then shifts by up to `padding` pixels.
        flip: Mirror each image left-right with probability 1/2.
        generator: Source of the random offsets and flips.

    Returns:
        A new (B, C, H, W) tensor.
    """
    batch, _, height, width = x.shape
    out = x
    if padding > 0:
        padded = F.pad(x, [padding] * 4)
        offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator).to(x.device)
        rows = (offsets[0][:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (offsets[1][:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        index = torch.arange(batch, device=x.device)[:, None, None, None]
        channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        out = padded[index, channel, rows, cols]
    if flip:
        mirror = (torch.rand(batch, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        out = torch.where(mirror, out.flip(3), out)
    return out
