"""An adaptive attack on classifier and detectors together: fool the first, stay under the others.

Carlini & Wagner, "Adversarial Examples Are Not Easily Detected: Bypassing Ten Detection Methods"
(AISec 2017, arXiv:1705.07263): a detector is evaluated against an attacker who knows it, by
optimizing one objective that asks for a misclassification and a low detection score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks.base import Attack
from bastion.attacks.restarts import restart_survivors
from bastion.detect.calibrate import CalibratedDetector
from bastion.errors import InputError
from bastion.losses import cw_margin
from bastion.threat import ThreatModel

__all__ = ["DetectorAwarePGD"]

_TINY = 1e-12


def _unit(grad: Tensor) -> Tensor:
    """Per-sample L2-normalized gradient (zero stays zero)."""
    norms = grad.flatten(1).norm(dim=1).clamp_min(_TINY)
    unit: Tensor = grad / norms.view(-1, *[1] * (grad.dim() - 1))
    return unit


class DetectorAwarePGD(Attack):
    """PGD towards  margin(x') > 0  and  s_d(x') <= t_d  for every detector d  (C&W 2017, section 3).

    The objective is C&W's: min(margin, kappa) - lam * sum_d relu(s_d - t_d) / scale_d, with margin
    the logit margin max_{j != y} z_j - z_y (positive iff misclassified), s_d and t_d each
    detector's score and threshold, and scale_d = max(|t_d|, 1e-3) putting detectors in different
    units on one scale. How a step follows it (`update`):

    - "orthogonal" (default; selective steps of Bryniarski et al., ICLR 2022, arXiv:2106.15023):
      a point not yet misclassified follows the margin's gradient alone (crossing the boundary
      means passing through low confidence, which a detector term would forbid); a misclassified
      but flagged point follows the detectors' gradient, minus its component that would lower a
      margin still under `kappa`.
    - "combined": the sum of both gradients, each L2-normalized per sample (`lam` weighs the
      detector's), the margin's only while under `kappa`.

    The direction takes the norm's ascent step (sign for Linf). Scores are differentiable through
    BPDA (straight-through on bit-depth rounding, see `FeatureSqueezing`); a detector may give a
    better-behaved `surrogate` to descend. A point succeeds when it is misclassified and no
    detector flags it: the first such iterate is kept (the point then stops), else the
    misclassified iterate with the smallest excess, else the one of largest margin.

    Not registered in `ATTACKS`: it needs calibrated detectors, which no default can supply. Its
    `AttackResult.success` counts misclassification only; `bastion.detect.rates.guard_outcome`
    adds the detectors.

    Args:
        detectors: The calibrated detector(s) to evade (all of them at once).
        steps: Gradient steps per restart.
        rel_step: Step size as a fraction of eps; None gives 2.5 / steps.
        n_restarts: Runs from random starts, each on the points not yet successful.
        kappa: Margin (logits) beyond which the classifier term is no longer protected or pushed.
        lam: Weight of the detector term in the "combined" update.
        random_start: Start from a uniform point in the eps-ball.
        update: "orthogonal" or "combined" (above).

    Example:
        >>> guard = calibrate(FeatureSqueezing(), model, x_clean, fpr=0.05)
        >>> result = DetectorAwarePGD(guard, steps=100)(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "pgd-detector-aware"
    supports_target: ClassVar[bool] = False

    def __init__(
        self,
        detectors: CalibratedDetector | Sequence[CalibratedDetector],
        steps: int = 100,
        rel_step: float | None = None,
        n_restarts: int = 1,
        kappa: float = 10.0,
        lam: float = 1.0,
        random_start: bool = True,
        update: str = "orthogonal",
    ) -> None:
        chosen = [detectors] if isinstance(detectors, CalibratedDetector) else list(detectors)
        if not chosen or not all(isinstance(d, CalibratedDetector) for d in chosen):
            raise InputError("DetectorAwarePGD needs one or more calibrated detectors")
        if int(steps) < 1 or int(n_restarts) < 1:
            raise InputError(f"steps and n_restarts must be >= 1, got {steps} and {n_restarts}")
        if (rel_step is not None and not rel_step > 0) or not kappa > 0 or not lam >= 0:
            raise InputError("rel_step and kappa must be > 0 and lam >= 0")
        self.detectors, self.steps, self.rel_step, self.n_restarts = chosen, int(steps), rel_step, int(n_restarts)
        if update not in ("orthogonal", "combined"):
            raise InputError(f"update must be 'orthogonal' or 'combined', got {update!r}")
        self.kappa, self.lam, self.random_start, self.update = float(kappa), float(lam), bool(random_start), update

    def perturb(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *,
        target: Tensor | None = None, generator: torch.Generator | None = None,
    ) -> Tensor:
        """Run the restarts on the points not yet misclassified-and-undetected."""
        if target is not None:
            raise InputError("DetectorAwarePGD is untargeted")
        def run(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            x_run, rank_run = self._run(model, x[rows], y[rows], threat, generator)
            return x_run, rank_run, rank_run >= 2.0  # rank 2 marks success (see _rank)

        return restart_survivors(x, self.n_restarts if self.random_start else 1, run,
                                 score=torch.full(y.shape, -torch.inf, device=x.device, dtype=torch.float64),
                                 fooled=torch.zeros(y.shape, dtype=torch.bool, device=x.device))

    def _objective(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(capped margin, detector excess, flagged by any detector, pull), each (B,).

        The excess ranks iterates; `pull`, the flagging detectors' surrogates, gives the gradient.
        """
        margin = cw_margin(model(x), y)
        excess, flagged = torch.zeros_like(margin).detach(), torch.zeros_like(margin, dtype=torch.bool)
        pull = torch.zeros_like(margin)
        for d in self.detectors:
            with torch.no_grad():
                score = d.detector.score(model, x)
            scale = max(abs(d.threshold), 1e-3)
            excess = excess + (score - d.threshold).clamp_min(0) / scale
            flagged_here = d.flags(score)
            if x.requires_grad and bool(flagged_here.any()):
                pull = pull + torch.where(flagged_here, d.detector.surrogate(model, x) / scale, 0.0)
            flagged |= flagged_here
        return margin.clamp(max=self.kappa), excess, flagged, pull

    @staticmethod
    def _rank(margin: Tensor, excess: Tensor, flagged: Tensor) -> Tensor:
        """Higher is better: 2 success; (1, 2) misclassified, less excess is better; < 0 margin so far."""
        fooled = margin > 0
        partial = 1.0 + 1.0 / (1.0 + excess.double())
        return torch.where(fooled & ~flagged, 2.0, torch.where(fooled, partial, margin.double().clamp(max=0) - 1.0))

    def _direction(self, up: Tensor, down: Tensor, margin: Tensor) -> Tensor:
        """Ascent direction from `up` (raises the margin) and `down` (lowers the excess); see `update` above.

        The projection applies only on conflict, so aligned objectives (confidence and margin) keep
        helping each other.
        """
        shape = (-1, *[1] * (up.dim() - 1))
        a, b, fooled = _unit(up), _unit(down), margin > 0
        if self.update == "combined":
            return a * (margin < self.kappa).view(shape) + self.lam * b
        dot = (a * b).flatten(1).sum(1).view(shape)
        return torch.where(fooled.view(shape), b - dot.clamp(max=0) * a, a)

    def _run(self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel,
             generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        step = (self.rel_step if self.rel_step is not None else 2.5 / self.steps) * threat.eps
        start = x + threat.norm.random_init(x, threat.eps, generator) if self.random_start else x
        x_cur, best = threat.clip(x, start), x.clone()
        rank = torch.full(y.shape, -torch.inf, device=x.device, dtype=torch.float64)
        rows = torch.arange(len(x), device=x.device)
        for i in range(self.steps + 1):
            x_cur = x_cur.detach().requires_grad_(i < self.steps)
            margin, excess, flagged, pull = self._objective(model, x_cur, y[rows])
            with torch.no_grad():
                new_rank = self._rank(margin.detach(), excess.detach(), flagged)
                better = new_rank > rank[rows]
                best[rows] = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x_cur.detach(), best[rows])
                rank[rows] = torch.maximum(new_rank, rank[rows])
            if i == self.steps:
                break
            active = new_rank < 2.0
            if not bool(active.any()):
                break
            g_cls = torch.autograd.grad(margin.sum(), x_cur)[0]
            g_det = torch.autograd.grad(pull.sum(), x_cur)[0] if bool(pull.requires_grad) else 0 * g_cls
            direction = self._direction(g_cls, -g_det, margin.detach())
            with torch.no_grad():
                rows, x_next = rows[active], (x_cur + step * threat.norm.ascent(direction))[active]
                x_cur = threat.clip(x[rows], x_next)
        return best, rank
