"""The curve below eps, read off the cascade's examples and then attacked where they leave points robust.

A cascade's adversarial example, shrunk toward its clean point (`bastion.evaluate.shrink`), bounds
the point's minimal adversarial radius from above; it proves nothing about a point whose example
lies far out in the ball. Read off alone, the curve below eps flattered wherever the examples lay
far from the boundary: on 48 points of mnist-sample at eps 0.3, zoo:mnist-cnn behind `x.detach() +
0 * x` (a zero input gradient, so only a straight-through attack gets through) read 85.4% at eps/2
against 56.2% for the plain model, whose own read-off was 46 points above its attacked 10.4%.

So each radius below eps, largest first, attacks the points the cascade broke at eps whose known
radius is still larger, with the curve's attack through the view the evaluation found works (the
escalation's, or the probes' when gradients mislead; Square too where input gradients are cut and
no straight-through or BPDA view exists, at the budget of the escalation's Square restarts). A
point it breaks gets the radius of its new example, shrunk; a point it fails on is held robust at
every smaller radius (an attack that fails in a ball seldom succeeds in a smaller one). Points the
cascade left robust at eps stay robust at every smaller radius. Only the points broken at eps are
attacked, each at few radii, so an honest model pays little (zoo:mnist-cnn-at, 200 points at eps
0.3: 4.8 forward and 4.2 backward passes per point more than the read-off alone); each radius
records the points it attacked and their passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch
from torch import nn

from bastion.attacks import Attack, Square
from bastion.defenses import AdaptiveModel
from bastion.evaluate.context import EvalContext
from bastion.evaluate.result import CurvePoint
from bastion.evaluate.shards import sum_over_processes
from bastion.evaluate.shrink import shrunk_radius
from bastion.evaluate.stages.checks import ChecksResult
from bastion.evaluate.stages.clean import mean_of
from bastion.evaluate.stages.escalation import EscalationResult, EscalationSettings
from bastion.evaluate.stages.probes import ProbesResult
from bastion.evaluate.stages.views import adaptive_view
from bastion.passes import measuring
from bastion.threat import ThreatModel

__all__ = ["CUT", "attacked_below", "curve_view"]

#: The checks that say the input gradients are cut (zero or vanishing): gradient attacks alone cannot work.
CUT = ("zero-gradients", "vanishing-gradients")


def curve_view(ctx: EvalContext) -> tuple[AdaptiveModel | None, list[Attack]]:
    """The adaptive view the cascade attacked (the escalation's, else the probes'), and Square where it is needed.

    Square (at the budget of the escalation's Square restarts) joins PGD where the checks found cut
    input gradients and no straight-through or BPDA view goes around them.
    """
    earlier, probes = ctx.earlier(EscalationResult), ctx.earlier(ProbesResult)
    settings = EscalationSettings(**earlier.settings) if earlier and earlier.settings else EscalationSettings()
    view = None
    if earlier and earlier.ran:
        view = adaptive_view(ctx, settings.eot_samples, earlier.random)
    elif probes is not None and probes.gradients_mislead:
        view = adaptive_view(ctx, settings.eot_samples, probes.random)
    checks = ctx.earlier(ChecksResult)
    cut = checks is not None and any(f.fired and f.check in CUT for f in checks.findings)
    return view, ([Square(n_queries=5 * settings.blackbox_queries)] if cut and not (view and view.adapted) else [])


def attacked_below(ctx: EvalContext, attacks: Sequence[Attack], radii: Sequence[float], *,
                   model: nn.Module | None = None, stream: str = "curve") -> dict[float, CurvePoint]:
    """Robust accuracy at each of `radii` (all below eps): the cascade's radii, then `attacks` on what they leave.

    `model`: the view of `ctx.model` the attacks see (None: the model). Returns a point per radius.
    """
    radius = ctx.broken_at.clone() if len(ctx.broken_at) else torch.full((len(ctx.data),), float("inf"))
    radius[~ctx.correct] = 0.0
    held = ctx.robust & ctx.correct  # robust at eps: robust at every smaller radius
    points: dict[float, CurvePoint] = {}
    for eps in sorted(radii, reverse=True):
        targets = ~held & (radius > eps)
        attacked = int(targets.sum()) if eps > 0 else 0
        with measuring(ctx.model) as cost:
            if attacked:
                _attack(ctx, attacks, eps, targets, radius, model, f"{stream}/eps={eps!r}")
        held |= targets & (radius > eps)  # the attack failed on them: held robust below
        points[eps] = CurvePoint(eps=eps, accuracy=mean_of(ctx.correct & (radius > eps)), attacked=attacked,
                                 passes=asdict(sum_over_processes(cost.passes)),
                                 source="cascade+attack")
    return points


def _attack(ctx: EvalContext, attacks: Sequence[Attack], eps: float, targets: torch.Tensor, radius: torch.Tensor,
            model: nn.Module | None, stream: str) -> None:
    """Attack `targets` at `eps` with each of `attacks` in turn; lower `radius` where an example is found."""
    threat = ThreatModel(ctx.threat.norm, eps, ctx.threat.bounds)
    for attack in attacks:
        left = (targets & (radius > eps)).nonzero().squeeze(1)
        if not left.numel():
            return
        shard = ctx.batches(left, f"curve eps={eps:.4g} ({attack.name})")
        for batch in shard:
            result = attack(ctx.model if model is None else model, batch.x, batch.y, threat,
                            generator=batch.generator(f"{stream}/{attack.name}"))
            rows = result.success.nonzero().squeeze(1)
            if rows.numel():
                found = shrunk_radius(ctx.model, batch.x[rows], result.x_adv[rows], batch.y[rows], ctx.threat.norm)
                broken = batch.indices[rows.cpu()]
                radius[broken] = torch.minimum(radius[broken], found.clamp(max=eps))
        shard.merge(radius)
