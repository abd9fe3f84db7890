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

__all__ = ["LOSSES", "LossFn", "cross_entropy", "cw_margin", "dlr", "dlr_targeted", "get_loss"]

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


def dlr(logits: Tensor, labels: Tensor) -> Tensor:
    """Difference of logits ratio (Croce & Hein, ICML 2020, arXiv:2003.01690, eq. 5).

    DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), with z sorted decreasingly: invariant to
    shifting and rescaling the logits, so it does not saturate on overconfident or rescaled models.
    Needs at least 3 classes.
    """
    if logits.shape[1] < 3:
        raise InputError("the DLR loss needs at least 3 classes")
    ordered = logits.sort(dim=1, descending=True).values
    return cw_margin(logits, labels) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def dlr_targeted(logits: Tensor, labels: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR (Croce & Hein 2020, eq. 6): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).

    Maximizing it pushes the target logit above the true one. Needs at least 4 classes.
    """
    if logits.shape[1] < 4:
        raise InputError("the targeted DLR loss needs at least 4 classes")
    ordered = logits.sort(dim=1, descending=True).values
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)
    target_logit = logits.gather(1, target[:, None]).squeeze(1)
    scale = ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12
    return (target_logit - true_logit) / scale


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "cw": cw_margin, "dlr": dlr}


def get_loss(name: str) -> LossFn:
    """Look a loss up by name."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]
