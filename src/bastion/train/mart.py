"""MART (Wang et al., ICLR 2020): misclassification-aware adversarial training."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.threat import ThreatModel
from bastion.train._inner import perturb
from bastion.train.base import TRAINERS, StepOutput
from bastion.train.pgd_at import check_steps
from bastion.train.trades import KLRegularized, kl_rows

__all__ = ["MART", "boosted_ce"]


def boosted_ce(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample boosted cross-entropy (MART eq. 8): -log p_y - log(1 - max_{k != y} p_k)."""
    probs = F.softmax(logits, dim=1)
    others = probs.scatter(1, y[:, None], -1.0).amax(dim=1)
    return F.cross_entropy(logits, y, reduction="none") - torch.log(1.0001 - others + 1e-12)


@TRAINERS.register("mart")
class MART(KLRegularized):
    """Misclassification-aware adversarial training (Wang et al., ICLR 2020, openreview rklOg6EFwS, eq. 10).

    loss = BCE(f(x_adv), y) + beta * mean(KL(f(x) || f(x_adv)) * (1 - p_y(x))), with BCE the boosted
    cross-entropy and x_adv found by PGD on cross-entropy from x + 0.001 * N(0, I) (as in the
    reference code). The KL term weighs misclassified clean points more.

    Args:
        beta: Weight of the misclassification-aware KL term (the paper: 6).
        steps: PGD steps (the paper: 10 on CIFAR-10).
        rel_step: PGD step size as a fraction of eps; None gives 2.5 / steps.

    Example:
        >>> out = MART(beta=6.0).loss(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "mart"

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Boosted cross-entropy on x_adv + beta * misclassification-weighted KL."""
        x_adv = perturb(model, x, lambda z: F.cross_entropy(z, y, reduction="none"), threat, steps=self.steps,
                        step_size=check_steps(self.steps, self.rel_step) * threat.eps, start="normal",
                        generator=generator)
        logits, adv_logits = model(x), model(x_adv)
        true_prob = F.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
        robust = (kl_rows(logits, adv_logits) * (1.0000001 - true_prob)).mean()
        loss = boosted_ce(adv_logits, y).mean() + self.beta * robust
        return StepOutput(loss, logits=logits.detach(), adv_logits=adv_logits.detach())
