"""The fast gradient sign method: one step of size eps."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks.base import ATTACKS, Attack
from bastion.losses import get_loss
from bastion.threat import ThreatModel

__all__ = ["FGSM"]


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast gradient sign method (Goodfellow, Shlens & Szegedy, ICLR 2015, arXiv:1412.6572).

    x_adv = x + eps * sign(grad_x loss) for Linf; for L2 the step follows the normalized
    gradient instead (the fast gradient method). One forward and one backward pass: the sanity
    check every evaluation starts with, and a weak attack by design.

    Args:
        loss: "ce" (cross-entropy) or "cw" (Carlini-Wagner margin on logits).

    Example:
        >>> result = FGSM()(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "fgsm"

    def __init__(self, loss: str = "ce") -> None:
        get_loss(loss)
        self.loss = loss

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Take the single step."""
        sign, labels = (1.0, y) if target is None else (-1.0, target)
        x = x.clone().requires_grad_(True)
        loss = sign * get_loss(self.loss)(model(x), labels)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        return threat.clip(x.detach(), x.detach() + threat.eps * threat.norm.ascent(grad))
