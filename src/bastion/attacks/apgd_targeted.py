"""APGD-T: Auto-PGD on the targeted DLR loss, cycling through the most likely wrong classes."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks.apgd import Objective, _apgd, _check_settings, _empty_best
from bastion.attacks.base import ATTACKS, Attack, is_success
from bastion.errors import InputError
from bastion.losses import dlr_targeted
from bastion.threat import ThreatModel

__all__ = ["APGDT"]


def _objective(y: Tensor, goal: Tensor, target: Tensor | None) -> Objective:
    """Maximize targeted DLR towards `goal`; success is `target` predicted, or any wrong class if target is None."""

    def objective(logits: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        success = is_success(logits, y[rows], None if target is None else target[rows])
        return dlr_targeted(logits, y[rows], goal[rows]), success

    return objective


@ATTACKS.register("apgd-t")
class APGDT(Attack):
    """Targeted APGD (Croce & Hein, ICML 2020, arXiv:2003.01690, Sec. 4 and Eq. 6), used as an untargeted attack.

    Without a target, it runs APGD (Algorithm 1, see `APGD`) on the targeted DLR loss
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) once for each of the `n_targets` classes t the clean
    logits rank highest after the true one, each time with `n_restarts` restarts and only on the points
    no earlier run fooled; a point counts as fooled when any wrong class is predicted. With a target,
    it attacks that class alone and succeeds when the target is predicted. Needs at least 4 classes.

    Args:
        steps: Iterations per run (N_iter).
        n_restarts: Runs per target class from independent random starts.
        n_targets: Target classes tried, clipped to the number of classes minus one (9 in AutoAttack).
        rho: Fraction of loss-raising steps below which the step size is halved (condition 1).
        momentum: alpha of Eq. 2, the weight of the new step against the previous one.
        eot_iter: Gradients averaged per iterate (EOT, for randomized models).

    Example:
        >>> result = APGDT(n_targets=9)(model, x, y, ThreatModel("linf", 8 / 255))
    """

    name: ClassVar[str] = "apgd-t"

    def __init__(
        self,
        steps: int = 100,
        n_restarts: int = 1,
        n_targets: int = 9,
        rho: float = 0.75,
        momentum: float = 0.75,
        eot_iter: int = 1,
    ) -> None:
        _check_settings(steps, n_restarts, rho, momentum, eot_iter)
        if int(n_targets) < 1:
            raise InputError(f"n_targets must be >= 1, got {n_targets}")
        self.steps, self.n_restarts, self.n_targets = int(steps), int(n_restarts), int(n_targets)
        self.rho, self.momentum, self.eot_iter = float(rho), float(momentum), int(eot_iter)

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
        """Attack the given target, or each top-ranked wrong class in turn; return the first adversarial points."""
        best = _empty_best(x)
        if target is not None:
            _apgd(model, x, threat, _objective(y, target, target), best, self, generator)
            return best[0]
        with torch.no_grad():
            logits: Tensor = model(x)
        n_targets = min(self.n_targets, logits.shape[1] - 1)
        # The clean logits rank the classes once; the true class is excluded (AutoAttack ranks per target).
        ranked = logits.scatter(1, y[:, None], -torch.inf).topk(n_targets, dim=1).indices
        for k in range(n_targets):
            _apgd(model, x, threat, _objective(y, ranked[:, k], None), best, self, generator)
        return best[0]
