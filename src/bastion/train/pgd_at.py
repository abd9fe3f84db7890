"""PGD adversarial training (Madry et al., ICLR 2018): train on the worst case found by PGD."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train._inner import perturb
from bastion.train.base import TRAINERS, StepOutput, Trainer

__all__ = ["PGDAT", "check_steps"]


def check_steps(steps: int, rel_step: float | None) -> float:
    """Validate attack steps and step size; return the step size as a fraction of eps (default 2.5 / steps)."""
    if int(steps) < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    if rel_step is not None and not rel_step > 0:
        raise InputError(f"rel_step must be > 0, got {rel_step}")
    return float(rel_step) if rel_step is not None else 2.5 / int(steps)


@TRAINERS.register("pgd-at")
class PGDAT(Trainer):
    """PGD adversarial training (Madry et al., ICLR 2018, arXiv:1706.06083, eq. 2.1).

    min_theta E[max_{delta in S} CE(f(x + delta), y)]: the inner maximum is approximated by PGD
    from a uniform random start in the eps-ball, run with the model in eval mode, and the weights
    are trained on the last PGD iterate only.

    Args:
        steps: PGD steps of the inner maximization (Madry et al.: 40 on MNIST, 7 on CIFAR-10).
        rel_step: PGD step size as a fraction of eps; None gives 2.5 / steps.

    Example:
        >>> out = PGDAT(steps=10).loss(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "pgd-at"

    def __init__(self, steps: int = 10, rel_step: float | None = None) -> None:
        check_steps(steps, rel_step)
        self.steps = int(steps)
        self.rel_step = rel_step

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Cross-entropy on the PGD adversarial examples."""
        step = check_steps(self.steps, self.rel_step) * threat.eps
        x_adv = perturb(model, x, lambda z: F.cross_entropy(z, y, reduction="none"), threat,
                        steps=self.steps, step_size=step, generator=generator)
        adv_logits = model(x_adv)
        return StepOutput(F.cross_entropy(adv_logits, y), adv_logits=adv_logits.detach())
