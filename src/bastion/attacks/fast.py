"""APGD-fast: AutoAttack-strength robust accuracy for a fraction of its forward and backward passes."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bastion.attacks._hopeless import hopeless
from bastion.attacks._malt import malt_targets
from bastion.attacks._near_miss import near_misses
from bastion.attacks._odi import odi_start
from bastion.attacks.apgd import APGD, Best, GiveUp, Objective, Start, _apgd, _empty_best, _random_start
from bastion.attacks.base import ATTACKS, Attack, is_success
from bastion.errors import InputError
from bastion.losses import cw_margin
from bastion.threat import ThreatModel

__all__ = ["FastAPGD"]


def _margin_objective(y: Tensor, goal: Tensor | None, target: Tensor | None, loss: str = "cw") -> Objective:
    """Maximize the margin max_{j != y} z_j - z_y (the cross-entropy with `loss="ce"`), or z_goal - z_y.

    Success as `is_success` with `target`.
    """

    def objective(logits: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        success = is_success(logits, y[rows], None if target is None else target[rows])
        if goal is None:
            if loss == "ce":
                return F.cross_entropy(logits, y[rows], reduction="none"), success
            return cw_margin(logits, y[rows]), success
        z = logits.gather(1, torch.stack([goal[rows], y[rows]], dim=1))
        return z[:, 0] - z[:, 1], success

    return objective


@ATTACKS.register("apgd-fast")
class FastAPGD(Attack):
    """Margin APGD from ODI starts, then targeted margin APGD on the MALT-nearest classes, with early give-up.

    Untargeted, it runs in two phases, each point leaving as soon as it is fooled:
    1. APGD (Croce & Hein, ICML 2020, arXiv:2003.01690; its step-size schedule and checkpoints, bastion's
       own `APGD` loop) on the margin max_{j != y} z_j - z_y, from a start found by output-diversified
       initialization (ODI; Tashiro, Sugiyama & Tashiro, NeurIPS 2020, arXiv:2003.06878): `odi_steps`
       steps of size eps along a random direction in logit space.
    2. On the points still robust, targeted margin APGD (z_t - z_y) towards each of the `n_targets`
       classes nearest by MALT's linearized distance |z_y - z_t| / ||grad(z_y - z_t)||_* (Melamed et al.,
       NeurIPS 2024, arXiv:2407.02240), nearest first, not AutoAttack's highest logits.
    3. Near misses (`near_misses`): a point still robust whose best margin closed all but `near` of its
       clean margin runs both phases again from a new ODI start, up to `near_restarts` rounds; they
       are few (about 3% of the robust points of zoo:mnist-cnn at Linf 0.1), and they are the points
       AutoAttack's many runs break where one run of ours did not.
    Budget goes where it can still succeed: besides fooled points, a robust point whose best margin is
    hopeless leaves a run (`hopeless`: at `patience` checkpoints in a row, by default the first one it
    meets, it would not reach the boundary even at `slack` times its recent pace), and the passes
    this saves go to the near misses of phase 3, in the spirit of the discarding of A3 (Liu et al.,
    CVPR 2022, arXiv:2203.08546), here from each point's own online progress. Each gradient step's forward pass
    also decides success and the best point (no extra forward per step): a run costs N backward and
    N + 1 forward passes per point plus `odi_steps` of each, MALT one forward and K backward, and the
    near-miss rule one forward for the clean margins and one per round.
    With a target, only phase 2 runs, towards that target. Gradient-only: where gradients mislead
    (zoo:mnist-cnn-at in L2), AutoAttack's FAB-T and Square break far more points.

    Args:
        steps: Iterations of the untargeted run (N_iter).
        n_targets: Classes of the targeted phase, clipped to K - 1 (0 skips the phase).
        target_steps: Iterations of each targeted run.
        n_restarts: Runs per phase (untargeted, and each target) from independent ODI starts.
        odi_steps: ODI steps before each run (0: APGD's random start).
        slack: Factor on a point's recent progress in the give-up rule (larger gives up later).
        patience: Slow stretches in a row (checkpoint to checkpoint) before a robust point gives up.
        near: A robust point whose best margin closed all but this share of its clean margin is a near miss.
        near_restarts: Rounds of both phases again, from new ODI starts, on the near misses only (0: none).
        loss: The untargeted loss of phase 1: "cw" (the margin) or "ce" (cross-entropy).
        near_loss: The untargeted loss of the near-miss rounds: "cw" (the margin again) or "ce" (cross-entropy, as
            AutoAttack's APGD-CE: another loss surface; on 1,000 points of the zoo models neither was better).
        drop_hopeless: Whether robust points may give up early (False spends the full budget).
        rho: APGD's condition-1 fraction of loss-raising steps.
        momentum: APGD's momentum alpha.

    Example:
        >>> result = FastAPGD()(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "apgd-fast"

    def __init__(
        self,
        steps: int = 100,
        n_targets: int = 3,
        target_steps: int = 100,
        n_restarts: int = 1,
        odi_steps: int = 2,
        slack: float = 4.0,
        patience: int = 1,
        near: float = 0.05,
        near_restarts: int = 2,
        near_loss: str = "cw",
        loss: str = "cw",
        drop_hopeless: bool = True,
        rho: float = 0.75,
        momentum: float = 0.75,
    ) -> None:
        APGD(steps, n_restarts, "cw", rho, momentum)
        APGD(target_steps, n_restarts, "cw", rho, momentum)
        if int(n_targets) < 0 or int(odi_steps) < 0 or not float(slack) > 0 or int(patience) < 1 \
                or int(near_restarts) < 0 or not 0 <= float(near) < 1:
            raise InputError(f"n_targets, odi_steps and near_restarts must be >= 0, slack > 0, patience >= 1 and "
                             f"near in [0, 1), got {n_targets}, {odi_steps}, {near_restarts}, {slack}, {patience}, "
                             f"{near}")
        self.steps, self.n_targets, self.target_steps = int(steps), int(n_targets), int(target_steps)
        self.n_restarts, self.odi_steps, self.slack = int(n_restarts), int(odi_steps), float(slack)
        self.patience, self.near, self.near_restarts = int(patience), float(near), int(near_restarts)
        if near_loss not in ("cw", "ce") or loss not in ("cw", "ce"):
            raise InputError(f"loss and near_loss must be cw or ce, got {loss!r} and {near_loss!r}")
        self.near_loss, self.loss = near_loss, loss
        self.drop_hopeless, self.rho, self.momentum = bool(drop_hopeless), float(rho), float(momentum)

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
        """Run the phases on the batch; return each point's first adversarial example, else its best point."""
        best = _empty_best(x)
        untargeted = APGD(self.steps, self.n_restarts, "cw", self.rho, self.momentum)
        targeted = APGD(self.target_steps, self.n_restarts, "cw", self.rho, self.momentum)
        if target is not None:
            start, give_up = self._start(model, x, y, threat, generator, target), self._give_up(targeted, len(x))
            _apgd(model, x, threat, _margin_objective(y, target, target), best, targeted, generator, start, give_up)
            return best[0]
        start = self._start(model, x, y, threat, generator, None)
        ranked = torch.full((len(x), self.n_targets), -1, dtype=torch.long, device=x.device)  # MALT's, once a point
        self._phases(model, x, y, threat, best, (untargeted, targeted), generator, start, ranked, self.loss)
        if self.near_restarts:
            with torch.no_grad():
                clean_margin = cw_margin(model(x).float(), y)
        for _ in range(self.near_restarts):
            near = near_misses(model, best[0], y, best[2], clean_margin, self.near)
            if not near.any():
                break
            others = ~best[2] & ~near  # out of this round: marked fooled for its length
            best[2][others] = True
            self._phases(model, x, y, threat, best, (untargeted, targeted), generator, start, ranked, self.near_loss)
            best[2][others] = False
        return best[0]

    def _phases(self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, best: Best,
                runs: tuple[APGD, APGD], generator: torch.Generator | None, start: Start, ranked: Tensor,
                loss: str) -> None:
        """Phase 1 (untargeted APGD) and phase 2 (targeted, MALT-nearest classes) on the points not fooled.

        `ranked` (B, n_targets) holds each point's MALT targets, -1 until ranked: MALT ranks at the clean
        point, so a point the near-miss rounds attack again keeps the ranking it got the first time.
        """
        untargeted, targeted = runs
        _apgd(model, x, threat, _margin_objective(y, None, None, loss), best, untargeted, generator, start,
              self._give_up(untargeted, len(x)))
        rows = (~best[2]).nonzero().squeeze(1)
        if self.n_targets == 0 or rows.numel() == 0:
            return
        new = rows[ranked[rows, 0] < 0]
        if new.numel():
            found = malt_targets(model, x[new], y[new], threat.norm, self.n_targets)
            ranked[new, : found.shape[1]] = found
        for j in range(ranked.shape[1]):
            if bool((ranked[rows, j] < 0).any()):
                break  # fewer classes than n_targets: MALT clipped the ranking to K - 1
            goal = y.clone()
            goal[rows] = ranked[rows, j]
            _apgd(model, x, threat, _margin_objective(y, goal, None), best, targeted, generator, start,
                  self._give_up(targeted, len(x)))

    def _start(self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel,
               generator: torch.Generator | None, target: Tensor | None) -> Start:
        def start(x_rows: Tensor, rows: Tensor) -> Tensor:
            x0 = _random_start(x_rows, threat, generator)
            goal = None if target is None else target[rows]
            return odi_start(model, x_rows, x0, y[rows], threat, self.odi_steps, generator, goal)

        return start

    def _give_up(self, hp: APGD, batch: int) -> GiveUp | None:
        return hopeless(hp.steps, self.slack, batch, self.patience) if self.drop_hopeless else None
