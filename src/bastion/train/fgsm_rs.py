"""Fast adversarial training: FGSM from a random start (Wong, Rice & Kolter, ICLR 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train._inner import perturb
from bastion.train.base import TRAINERS, StepOutput, Trainer

__all__ = ["FGSMRS"]


@TRAINERS.register("fgsm-rs")
class FGSMRS(Trainer):
    """FGSM adversarial training with a random start (Wong, Rice & Kolter, ICLR 2020, arXiv:2001.03994, alg. 3).

    delta ~ U(-eps, eps); delta <- clip(delta + alpha * sign(grad), -eps, eps); train on x + delta.
    One extra forward-backward pass per batch, with alpha = 1.25 eps and a cyclic learning rate as
    in the paper. It can fail suddenly ("catastrophic overfitting": robust accuracy against PGD
    drops to zero within an epoch while FGSM accuracy soars), so the training loop checks PGD
    accuracy on held-out data every epoch, keeps the best robust checkpoint (the paper's early
    stopping) and warns on a collapse.

    Args:
        rel_step: alpha as a fraction of eps (the paper's 1.25; at 2 and above it overfits).
        random_start: Start from a uniform point in the eps-ball (turning it off is the plain FGSM
            training of Goodfellow et al., which overfits catastrophically).

    Example:
        >>> out = FGSMRS().loss(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "fgsm-rs"
    keep_best: ClassVar[bool] = True
    default_schedule: ClassVar[str] = "cyclic"

    def __init__(self, rel_step: float = 1.25, random_start: bool = True) -> None:
        if not rel_step > 0:
            raise InputError(f"rel_step must be > 0, got {rel_step}")
        self.rel_step = float(rel_step)
        self.random_start = bool(random_start)

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Cross-entropy at the single FGSM step from the random start."""
        x_adv = perturb(model, x, lambda z: F.cross_entropy(z, y, reduction="none"), threat, steps=1,
                        step_size=self.rel_step * threat.eps, start="uniform" if self.random_start else "zero",
                        generator=generator)
        adv_logits = model(x_adv)
        return StepOutput(F.cross_entropy(adv_logits, y), adv_logits=adv_logits.detach())
