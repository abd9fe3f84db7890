"""Shrinking a found adversarial example toward its clean point: the radius where it stops fooling, and the curve."""

from __future__ import annotations

import torch
from torch import nn

from bastion.data import load_dataset
from bastion.evaluate import STAGES, Runner
from bastion.evaluate.context import EvalContext
from bastion.evaluate.shrink import shrunk_radius
from bastion.models import load_zoo_model
from bastion.threat import ThreatModel


class Halves(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5: the boundary along any segment is known exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.flatten(1).mean(1) - 0.5
        return torch.stack([-score, score], 1)


def test_the_radius_is_where_the_segment_crosses_the_boundary():
    x = torch.full((3, 1, 4, 4), 0.4)
    x_adv = x + torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1, 1)  # crosses 0.5 at t = 1/2, 1/4, 1/6
    radius = shrunk_radius(Halves(), x, x_adv, torch.zeros(3, dtype=torch.long), ThreatModel("linf", 1).norm,
                           steps=10)
    exact = torch.tensor([0.1, 0.1, 0.1])  # t * size = the distance 0.1 from 0.4 to 0.5, in Linf
    assert torch.all(radius >= exact) and torch.allclose(radius, exact, atol=0.6 * 2**-10)


def _curve(below_from_cascade: bool) -> tuple[list, EvalContext, object]:
    ctx = EvalContext(load_zoo_model("mnist-cnn").eval(), load_dataset("mnist-sample", limit=48),
                      ThreatModel("linf", 0.2), torch.device("cpu"), torch.float32, batch_size=24)
    stages = [STAGES.get("clean")(), STAGES.get("attack")(name="pgd", attack="pgd", params={"steps": 10}),
              STAGES.get("curve")(grid=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3], steps=10,
                                  below_from_cascade=below_from_cascade)]
    records = Runner(stages).run(ctx)
    return ctx.results["curve"].points, ctx, records[-1]


def test_the_curve_below_eps_from_the_cascade_is_consistent_and_cheaper_than_attacking_every_radius():
    points, ctx, record = _curve(below_from_cascade=True)
    accuracy = [p.accuracy for p in points]
    assert accuracy == sorted(accuracy, reverse=True)  # it can only fall
    broken = ~ctx.robust & ctx.correct
    assert bool(broken.any()) and bool(torch.all(ctx.broken_at[broken] <= 0.2 + 1e-6))
    attacked, _, attacked_record = _curve(below_from_cascade=False)
    assert attacked[-2:] == points[-2:]  # at and above eps nothing changes
    assert record.passes["backward_samples"] < attacked_record.passes["backward_samples"]
