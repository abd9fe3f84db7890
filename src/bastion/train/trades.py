"""TRADES (Zhang et al., ICML 2019): clean cross-entropy plus beta times a KL robustness term."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.distributed import unwrap
from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train._inner import perturb
from bastion.train.base import TRAINERS, StepOutput, Trainer
from bastion.train.pgd_at import check_steps

__all__ = ["TRADES", "KLRegularized", "kl_rows"]


def kl_rows(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Per-sample KL(softmax(logits_p) || softmax(logits_q)), shape (B,)."""
    log_p, log_q = F.log_softmax(logits_p, dim=1), F.log_softmax(logits_q, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


class KLRegularized(Trainer):
    """The constructor TRADES and MART share: the weight `beta` of their KL term and their PGD budget."""

    def __init__(self, beta: float = 6.0, steps: int = 10, rel_step: float | None = None) -> None:
        if not beta >= 0:
            raise InputError(f"beta must be >= 0, got {beta}")
        check_steps(steps, rel_step)
        self.beta = float(beta)
        self.steps = int(steps)
        self.rel_step = rel_step


@TRAINERS.register("trades")
class TRADES(KLRegularized):
    """TRADES (Zhang et al., ICML 2019, arXiv:1901.08573, eq. 5 and alg. 1).

    loss = CE(f(x), y) + beta * KL(f(x) || f(x_adv)), where x_adv maximizes that KL term by PGD
    from x + 0.001 * N(0, I) (as in the reference code), run with the model in eval mode. beta
    trades clean accuracy (low beta) for robustness (high beta); the paper uses 6 (CIFAR-10) and
    1 to 6 for the trade-off curve.

    Args:
        beta: Weight of the KL robustness term.
        steps: PGD steps on the KL term (the paper: 40 on MNIST, 10 on CIFAR-10).
        rel_step: PGD step size as a fraction of eps; None gives 2.5 / steps.

    Example:
        >>> out = TRADES(beta=6.0).loss(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "trades"

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Clean cross-entropy + beta * mean KL(clean || adversarial)."""
        with torch.no_grad():  # the clean target, through the module itself (not a DDP wrapper)
            inner = unwrap(model)
            was_training = inner.training
            target = inner.eval()(x)
            inner.train(was_training)
        x_adv = perturb(model, x, lambda z: kl_rows(target, z), threat, steps=self.steps,
                        step_size=check_steps(self.steps, self.rel_step) * threat.eps, start="normal",
                        generator=generator)
        logits, adv_logits = model(x), model(x_adv)
        loss = F.cross_entropy(logits, y) + self.beta * kl_rows(logits, adv_logits).mean()
        return StepOutput(loss, logits=logits.detach(), adv_logits=adv_logits.detach())
