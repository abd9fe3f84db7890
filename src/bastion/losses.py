"""Attack objectives: pure functions (logits, labels) -> per-sample loss, which attacks maximize.

Untargeted attacks maximize `loss(logits, y)`; targeted attacks maximize `-loss(logits, target)`,
which for both losses here pushes the target class to the top.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.errors import InputError

__all__ = ["LOSSES", "LossFn", "cross_entropy", "cw_margin", "get_loss"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy, shape (B,)."""
    return F.cross_entropy(logits, labels, reduction="none")


def cw_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Carlini & Wagner's margin (S&P 2017, arXiv:1608.04644, eq. f6 without kappa): max_{j != y} z_j - z_y.

    Positive exactly when the sample is misclassified. Working on logits, not probabilities, it
    does not saturate the way cross-entropy does on overconfident models.
    """
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], torch.finfo(logits.dtype).min)
    return others.amax(dim=1) - true_logit


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "cw": cw_margin}


def get_loss(name: str) -> LossFn:
    """Look a loss up by name."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]
