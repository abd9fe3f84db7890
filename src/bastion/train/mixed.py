"""Mixed adversarial training: a weighted sum of the clean and the PGD adversarial loss."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train._inner import perturb
from bastion.train.base import TRAINERS, StepOutput, Trainer
from bastion.train.pgd_at import check_steps

__all__ = ["Mixed"]


@TRAINERS.register("mixed")
class Mixed(Trainer):
    """Clean and adversarial loss mixed (Goodfellow et al., ICLR 2015, arXiv:1412.6572, eq. 3, with PGD).

    loss = (1 - mix) * CE(f(x), y) + mix * CE(f(x_adv), y), x_adv found by PGD as in Madry et al.
    (ICLR 2018, arXiv:1706.06083). Goodfellow et al. used mix = 0.5; mix = 1 is `pgd-at`.

    Args:
        mix: Weight of the adversarial term, in [0, 1].
        steps: PGD steps of the inner maximization.
        rel_step: PGD step size as a fraction of eps; None gives 2.5 / steps.

    Example:
        >>> out = Mixed(mix=0.5).loss(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "mixed"

    def __init__(self, mix: float = 0.5, steps: int = 10, rel_step: float | None = None) -> None:
        if not 0.0 <= mix <= 1.0:
            raise InputError(f"mix must lie in [0, 1], got {mix}")
        check_steps(steps, rel_step)
        self.mix = float(mix)
        self.steps = int(steps)
        self.rel_step = rel_step

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """(1 - mix) * clean cross-entropy + mix * adversarial cross-entropy."""
        step = check_steps(self.steps, self.rel_step) * threat.eps
        x_adv = perturb(model, x, lambda z: F.cross_entropy(z, y, reduction="none"), threat,
                        steps=self.steps, step_size=step, generator=generator)
        logits, adv_logits = model(x), model(x_adv)
        loss = (1 - self.mix) * F.cross_entropy(logits, y) + self.mix * F.cross_entropy(adv_logits, y)
        return StepOutput(loss, logits=logits.detach(), adv_logits=adv_logits.detach())
