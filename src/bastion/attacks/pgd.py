"""Projected gradient descent with random restarts, for any Lp threat model."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks.base import ATTACKS, Attack, is_success
from bastion.attacks.restarts import restart_survivors
from bastion.errors import InputError
from bastion.losses import get_loss
from bastion.threat import ThreatModel

__all__ = ["PGD"]


def _select(t: Tensor, rows: Tensor | None) -> Tensor:
    return t if rows is None else t[rows]


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected gradient descent (Madry et al., ICLR 2018, arXiv:1706.06083), Linf and L2 alike.

    Each step moves along the norm's steepest-ascent direction of the loss (sign of the gradient
    for Linf, the normalized gradient for L2) and projects back onto the eps-ball and the box.
    Every iterate is checked: the first one that fools the model is kept, and for points never
    fooled the iterate of highest loss. Restarts from new random points run only on the points
    still robust, so the result is the per-sample worst case over all restarts.

    Args:
        steps: Gradient steps per restart.
        rel_step: Step size as a fraction of eps; None gives Madry et al.'s rule 2.5 / steps.
        n_restarts: Runs from independent random starts (restarts need `random_start`).
        random_start: Start from a uniform point in the eps-ball instead of x.
        loss: "ce" (cross-entropy) or "cw" (Carlini-Wagner margin on logits).
        early_stop: Stop iterating on a point once it is fooled; it saves passes and cannot
            weaken the attack, whose success is the same.

    Example:
        >>> result = PGD(steps=40, n_restarts=5)(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "pgd"

    def __init__(
        self,
        steps: int = 20,
        rel_step: float | None = None,
        n_restarts: int = 1,
        random_start: bool = True,
        loss: str = "ce",
        early_stop: bool = True,
    ) -> None:
        if int(steps) < 1:
            raise InputError(f"steps must be >= 1, got {steps}")
        if int(n_restarts) < 1:
            raise InputError(f"n_restarts must be >= 1, got {n_restarts}")
        if rel_step is not None and not rel_step > 0:
            raise InputError(f"rel_step must be > 0, got {rel_step}")
        get_loss(loss)
        self.steps = int(steps)
        self.rel_step = rel_step
        self.n_restarts = int(n_restarts)
        self.random_start = bool(random_start)
        self.loss = loss
        self.early_stop = bool(early_stop)

    @property
    def step_size_fraction(self) -> float:
        """The step size used, as a fraction of eps."""
        return self.rel_step if self.rel_step is not None else 2.5 / self.steps

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
        """Run the restarts, each on the points no earlier restart fooled."""
        def run(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            return self._single_run(model, x[rows], y[rows], threat, None if target is None else target[rows],
                                    generator)

        return restart_survivors(x, self.n_restarts if self.random_start else 1, run,
                                 score=torch.full(y.shape, -torch.inf, device=x.device, dtype=x.dtype),
                                 fooled=torch.zeros(y.shape, dtype=torch.bool, device=x.device))

    def _single_run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        target: Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One PGD run; returns the per-sample best iterate, its loss and whether it fools the model."""
        loss_fn = get_loss(self.loss)
        sign, labels = (1.0, y) if target is None else (-1.0, target)
        step = self.step_size_fraction * threat.eps
        shape = (-1, *[1] * (x.dim() - 1))

        best, fooled = x.clone(), torch.zeros(y.shape, dtype=torch.bool, device=x.device)
        best_loss = torch.full(y.shape, -torch.inf, device=x.device, dtype=x.dtype)
        start = x + threat.norm.random_init(x, threat.eps, generator) if self.random_start else x
        x_cur = threat.clip(x, start)
        rows: Tensor | None = None  # indices still iterated; None means all of them
        for i in range(self.steps + 1):
            x_cur.requires_grad_(i < self.steps)
            logits = model(x_cur)
            loss = sign * loss_fn(logits, _select(labels, rows))
            target_rows = None if target is None else _select(target, rows)
            success = is_success(logits.detach(), _select(y, rows), target_rows)
            with torch.no_grad():
                # The first iterate that fools the model is kept; until then the one of highest loss.
                better = ~_select(fooled, rows) & (success | (loss.detach() > _select(best_loss, rows)))
                idx = slice(None) if rows is None else rows
                best[idx] = torch.where(better.view(shape), x_cur.detach(), _select(best, rows))
                best_loss[idx] = torch.where(better, loss.detach(), _select(best_loss, rows))
                fooled[idx] = _select(fooled, rows) | success
            if i == self.steps:
                break
            (grad,) = torch.autograd.grad(loss.sum(), x_cur)
            with torch.no_grad():
                x_next = x_cur.detach() + step * threat.norm.ascent(grad)
                if self.early_stop and bool(success.any()):
                    keep = ~success
                    rows = keep.nonzero().squeeze(1) if rows is None else rows[keep]
                    if rows.numel() == 0:
                        break
                    x_next = x_next[keep]
                x_cur = threat.clip(_select(x, rows), x_next)
        return best, best_loss, fooled
