"""The accuracy-vs-eps curve.

A point broken within a small ball stays broken in every larger one, so each radius attacks only
the points that survived the previous one, and at the threat model's eps the cascade's per-point
worst case is reused: the curve can only fall, and costs little where the model breaks early.
With `below_from_cascade` (the fast suite), the radii below eps start from the cascade's examples
shrunk toward their clean points and attack the points those leave robust
(`bastion.evaluate.stages.curve_attack`). After an escalation, or when the probes found that
gradients mislead, the curve attacks the same adaptive view of the model the cascade did, and
where input gradients are cut with no view to go around them, Square too. Each radius records the
points it attacked and the passes that took (the stage's, less the view's probe pass). The curve's shape alone
says nothing about masking (a model trained at a larger eps rightly holds far beyond the eps
evaluated); the verdict holds it against independent evidence instead
(`masking.curve_evidence_finding`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from bastion.attacks import PGD, Attack
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag
from bastion.evaluate.result import CurvePoint
from bastion.evaluate.shards import sum_over_processes
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.clean import mean_of
from bastion.evaluate.stages.curve_attack import attacked_below, curve_view
from bastion.evaluate.stages.curve_grid import curve_grid
from bastion.evaluate.validation import check_int, check_loss, check_rel_step
from bastion.passes import measuring
from bastion.threat import ThreatModel, parse_eps

__all__ = ["CurveResult", "CurveSettings", "CurveStage", "curve_points"]


@dataclass(frozen=True)
class CurveSettings:
    """The radii and the attack that draws the curve.

    Attributes: grid: the radii (the plan puts the threat model's eps in it); `below_from_cascade`:
    below eps, start from the cascade's adversarial examples shrunk toward their clean points
    (`ctx.broken_at`) and attack only the points broken at eps that they leave robust, largest
    radius first (`curve_attack.attacked_below`), instead of every point still robust; the PGD
    attack's settings.
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
    """Robust accuracy at each radius of the grid, with PGD through the view the cascade needed (Square where cut)."""

    kind = "curve"
    Settings = CurveSettings
    Result = CurveResult
    settings: CurveSettings
    flags = (
        Flag("curve_points", 9, "points of the accuracy-vs-eps curve (0: no curve)", int, minimum=0),
        Flag("curve_max", None, "largest eps of the curve (default 2 x eps)", float, parse=parse_eps,
             check=lambda v: v >= 0, expects="be >= 0"),
        Flag("curve_restarts", 1, "PGD restarts per curve point", int, minimum=1),
    )

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The grid, and PGD's settings."""
        return {"steps": options["steps"], "rel_step": options["rel_step"], "loss": options["loss"],
                "grid": curve_grid(options), "restarts": options["curve_restarts"]}

    def run(self, ctx: EvalContext) -> CurveResult:
        """Draw the curve, through the adaptive view the cascade found it needs when there is one."""
        s = self.settings
        if not s.grid:
            return CurveResult(points=[])
        attack = PGD(steps=s.steps, n_restarts=s.restarts, rel_step=s.rel_step, loss=s.loss)
        view, square = curve_view(ctx)
        points = curve_points(ctx, [attack, *square], s.grid, model=None if view is None else view.module,
                              below_from_cascade=s.below_from_cascade)
        settings: dict[str, Any] = {"attack": attack.name, **attack.settings()}
        if square:
            settings["gradient_free"] = {"attack": square[0].name, **square[0].settings()}
        if view is not None and view.adapted:
            settings["adaptive"] = view.describe()
        return CurveResult(points=points, settings=settings)

    @classmethod
    def headline(cls, result: CurveResult) -> str:
        """The curve in one line."""
        if not result.points:
            return "no curve"
        return "accuracy vs eps: " + "  ".join(f"{p.eps:.3g}:{p.accuracy:.1%}" for p in result.points)


def curve_points(ctx: EvalContext, attacks: Attack | list[Attack], grid: list[float], *,
                 model: nn.Module | None = None, stream: str = "curve",
                 below_from_cascade: bool = False) -> list[CurvePoint]:
    """Robust accuracy at each eps of `grid`, attacked in increasing order (`model`: a view of `ctx.model`).

    With `below_from_cascade`, a radius below the threat model's eps starts from the cascade's
    adversarial examples shrunk toward their clean points (`ctx.broken_at`), and `attacks` attack
    the points they leave robust (`attacked_below`). Each point records what its radius cost.
    """
    attacks = [attacks] if isinstance(attacks, Attack) else attacks
    grid = sorted(grid)
    at_threat = [math.isclose(e, ctx.threat.eps, rel_tol=1e-9, abs_tol=1e-12) for e in grid]
    below = [e for e, same in zip(grid, at_threat, strict=True) if below_from_cascade and not same
             and e < ctx.threat.eps]
    known = attacked_below(ctx, attacks, below, model=model, stream=stream) if below else {}
    robust = ctx.correct.clone()
    points: list[CurvePoint] = []
    for eps, same in zip(grid, at_threat, strict=True):
        if eps in known:
            points.append(known[eps])
            continue
        if same or eps > ctx.threat.eps:
            robust &= ctx.robust
        attacked = int(robust.sum()) if eps > 0 and not same else 0
        with measuring(ctx.model) as cost:
            if attacked:
                threat = ThreatModel(ctx.threat.norm, eps, ctx.threat.bounds)
                for attack in attacks:
                    shard = ctx.batches(robust.nonzero().squeeze(1), f"curve eps={eps:.4g} ({attack.name})")
                    for batch in shard:
                        result = attack(ctx.model if model is None else model, batch.x, batch.y, threat,
                                        generator=batch.generator(f"{stream}/eps={eps!r}" + (
                                            "" if attack is attacks[0] else f"/{attack.name}")))
                        robust[batch.indices[result.success.cpu()]] = False
                    shard.merge(robust)
        points.append(CurvePoint(eps=eps, accuracy=mean_of(robust), attacked=attacked,
                                 passes=asdict(sum_over_processes(cost.passes)),
                                 source="cascade" if same else "attack"))
    return points
