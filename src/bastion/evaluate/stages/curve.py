"""The accuracy-vs-eps curve.

A point broken within a small ball stays broken in every larger one, so each radius attacks only
the points that survived the previous one, and at the threat model's eps the cascade's per-point
worst case is reused: the curve can only fall, and costs little where the model breaks early.
After an escalation the curve attacks the same adaptive view of the model the escalation did. The
curve's shape alone says nothing about masking (a model trained at a larger eps rightly holds far
beyond the eps evaluated); the verdict holds it against independent evidence instead
(`masking.curve_evidence_finding`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bastion.attacks import PGD, Attack
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.result import CurvePoint
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.clean import mean_of
from bastion.evaluate.stages.escalation import EscalationResult, EscalationSettings
from bastion.evaluate.stages.views import adaptive_view
from bastion.evaluate.validation import check_int, check_loss, check_rel_step
from bastion.threat import ThreatModel

__all__ = ["CurveResult", "CurveSettings", "CurveStage", "curve_points"]


@dataclass(frozen=True)
class CurveSettings:
    """The radii and the attack that draws the curve.

    Attributes: grid: the radii (the plan puts the threat model's eps in it); `below_from_cascade`:
    read the radii below eps off the cascade's adversarial examples shrunk toward their clean points
    (`ctx.broken_at`, a few forward passes per broken point, spent already) instead of attacking
    again; the PGD attack's settings.
    """

    grid: list[float] = field(default_factory=list)
    below_from_cascade: bool = False
    restarts: int = 1
    steps: int = 20
    rel_step: float | None = None
    loss: str = "ce"

    def __post_init__(self) -> None:
        if any(not (isinstance(e, (int, float)) and math.isfinite(e) and e >= 0) for e in self.grid):
            raise InputError(f"curve radii must be finite and >= 0, got {self.grid}")
        check_int("curve_restarts", self.restarts, 1)
        check_int("steps", self.steps, 1)
        check_rel_step(self.rel_step)
        check_loss(self.loss)


@dataclass(frozen=True)
class CurveResult(StageResult):
    """The curve, and the attack that drew it."""

    points: list[CurvePoint]
    settings: dict[str, Any] = field(default_factory=dict)


@STAGES.register("curve")
class CurveStage(Stage):
    """Robust accuracy at each radius of the grid, with PGD (through the adaptive view after an escalation)."""

    kind = "curve"
    Settings = CurveSettings
    Result = CurveResult
    settings: CurveSettings

    def run(self, ctx: EvalContext) -> CurveResult:
        """Draw the curve, through the escalation's adaptive view when there was one."""
        s = self.settings
        if not s.grid:
            return CurveResult(points=[])
        attack = PGD(steps=s.steps, n_restarts=s.restarts, rel_step=s.rel_step, loss=s.loss)
        earlier = ctx.earlier(EscalationResult)
        escalation_settings = EscalationSettings(**earlier.settings) if earlier and earlier.settings else \
            EscalationSettings()
        view = adaptive_view(ctx, escalation_settings.eot_samples, earlier.random) if earlier and earlier.ran else None
        points = curve_points(ctx, attack, s.grid, model=None if view is None else view.module,
                              below_from_cascade=s.below_from_cascade)
        settings: dict[str, Any] = {"attack": attack.name, **attack.settings()}
        if view is not None and view.adapted:
            settings["adaptive"] = view.describe()
        return CurveResult(points=points, settings=settings)

    @classmethod
    def headline(cls, result: CurveResult) -> str:
        """The curve in one line."""
        if not result.points:
            return "no curve"
        return "accuracy vs eps: " + "  ".join(f"{p.eps:.3g}:{p.accuracy:.1%}" for p in result.points)


def curve_points(ctx: EvalContext, attack: Attack, grid: list[float], *, model: nn.Module | None = None,
                 stream: str = "curve", below_from_cascade: bool = False) -> list[CurvePoint]:
    """Robust accuracy at each eps of `grid`, attacked in increasing order (`model`: a view of `ctx.model`).

    With `below_from_cascade`, a radius below the threat model's eps is not attacked: a point counts
    broken there when the cascade's adversarial example of it, shrunk toward the clean point, lies
    within that radius (`ctx.broken_at`).
    """
    robust = ctx.correct.clone()
    points: list[CurvePoint] = []
    for eps in sorted(grid):
        at_threat = math.isclose(eps, ctx.threat.eps, rel_tol=1e-9, abs_tol=1e-12)
        if at_threat or eps > ctx.threat.eps:
            robust &= ctx.robust
        elif below_from_cascade and len(ctx.broken_at):
            robust &= ~(ctx.broken_at <= eps)
            points.append(CurvePoint(eps=eps, accuracy=mean_of(robust)))
            continue
        if eps > 0 and not at_threat:
            threat = ThreatModel(ctx.threat.norm, eps, ctx.threat.bounds)
            shard = ctx.batches(robust.nonzero().squeeze(1), f"curve eps={eps:.4g}")
            for batch in shard:
                result = attack(ctx.model if model is None else model, batch.x, batch.y, threat,
                                generator=batch.generator(f"{stream}/eps={eps!r}"))
                robust[batch.indices[result.success.cpu()]] = False
            shard.merge(robust)
        points.append(CurvePoint(eps=eps, accuracy=mean_of(robust)))
    return points
