"""The curve below eps does not flatter a model whose input gradient is zero: it draws the curve of the model it wraps.

Read off the cascade's examples alone (shrunk toward their clean points), the curve of zoo:mnist-cnn behind
`x.detach() + 0 * x` stood 29 points above the plain model's at eps/2 (85.4% against 56.2% on these 48 points,
and the plain model's own read-off curve was 46 points too high): the twin's examples, found by a straight-through
attack at eps, lie far from its boundary. Attacking the points still robust at each radius gives both the same curve.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bastion.attacks import PGD, Square
from bastion.data import load_dataset
from bastion.evaluate import STAGES, EvalConfig, EvalResult, evaluate_model
from bastion.evaluate.context import EvalContext
from bastion.evaluate.report_schema import attack_rows
from bastion.evaluate.result import Finding, passes_per_point
from bastion.evaluate.stages.checks import ChecksResult
from bastion.evaluate.stages.curve import curve_points
from bastion.evaluate.stages.curve_attack import curve_view
from bastion.models import load_zoo_model
from bastion.render.blocks import per_point_text
from bastion.report import render_html
from bastion.report.terminal import format_result
from bastion.threat import ThreatModel
from tests.evaluate.costs import assert_rows_add_up


class ZeroGradientTwin(nn.Module):
    """Another model's function with a zero input gradient."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.detach() + 0 * x)


def _evaluate(model: nn.Module) -> EvalResult:
    config = EvalConfig.build(model="m", data="mnist-sample", eps=0.3, suite="fast", curve_points=5, batch_size=48,
                              aa_steps=5, aa_queries=50, blackbox_queries=20, probe_points=16)
    return evaluate_model(model.eval(), load_dataset("mnist-sample", limit=48), config)


@pytest.fixture(scope="module")
def pair() -> tuple[EvalResult, EvalResult]:
    return _evaluate(load_zoo_model("mnist-cnn")), _evaluate(ZeroGradientTwin(load_zoo_model("mnist-cnn")))


def test_a_zero_gradient_twin_draws_the_curve_of_the_model_it_wraps(pair):
    plain, twin = pair
    assert "zero-gradients" in {f.check for f in twin.verdict.fired}  # the twin's gradients are cut indeed
    assert [p.eps for p in twin.curve] == [p.eps for p in plain.curve]
    for mine, theirs in zip(twin.curve, plain.curve, strict=True):
        assert abs(mine.accuracy - theirs.accuracy) <= 0.05, (mine, theirs)
    below = [p for p in twin.curve if 0 < p.eps < 0.3]
    assert below and all(p.source == "cascade+attack" for p in below) and any(p.attacked for p in below)
    accuracy = [p.accuracy for p in twin.curve]
    assert accuracy == sorted(accuracy, reverse=True)


def test_the_curve_counts_what_it_spent_and_the_attack_rows_add_up_to_their_stages(pair):
    for result in pair:
        report = result.to_dict()
        assert_rows_add_up(report)
        curve = next(s for s in report["stages"] if s["kind"] == "curve")
        spent = sum(p.passes.get("forward_samples", 0) for p in result.curve)
        assert 0 < spent <= curve["passes"]["forward_samples"]
        html, text = render_html(report), format_result(report)
        for row in (a for a in attack_rows(report) if a["name"] in ("fgsm", "apgd-fast")):  # one row: the whole stage
            shown = passes_per_point(row["passes"], report["summary"]["n_samples"])
            stage = next(s for s in report["stages"] if s["name"] == row["stage"])
            assert shown == pytest.approx(stage["passes_per_point"])
            assert html.count(per_point_text(shown)) >= 2  # the attack table's row and the stage table's
            assert text.count(per_point_text(shown).replace(" / ", "/")) >= 2
        assert "then the curve&#x27;s attack on the rest" in html  # each radius's source and cost, under the curve
    escalation = [a for a in pair[1].attacks if a.stage == "escalation"]
    assert escalation and escalation[-1].name == "overhead"  # the view's probe pass, with nothing left to attack
    assert EvalResult.from_dict(pair[1].to_dict()) == pair[1]


def test_a_zero_gradient_twin_really_has_no_input_gradient():
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    ZeroGradientTwin(load_zoo_model("mnist-cnn"))(x).sum().backward()
    assert x.grad is not None and not x.grad.any()


def _far_cascade(model: nn.Module) -> EvalContext:
    """A context as a cascade leaves it that broke every point at eps 0.3 with examples on the ball's surface."""
    data = load_dataset("mnist-sample", limit=24)
    ctx = EvalContext(model, data, ThreatModel("linf", 0.3), torch.device("cpu"), torch.float32, batch_size=24)
    STAGES.get("clean")().run(ctx)
    ctx.robust[:] = False
    ctx.broken_at[ctx.correct] = 0.3
    return ctx


def test_where_gradients_are_cut_and_no_view_goes_around_them_square_draws_the_curve():
    twin = ZeroGradientTwin(load_zoo_model("mnist-cnn")).eval()
    cut = Finding("zero-gradients", "zero input gradients", True, "broken", "all zero")
    ctx = _far_cascade(twin)
    ctx.results["checks"] = ChecksResult(findings=[cut], hits={}, flattering=1.0)
    view, extra = curve_view(ctx)
    assert view is None and [a.name for a in extra] == ["square"]
    grid = [0.0, 0.15, 0.3]
    gradients_only = curve_points(ctx, [PGD(steps=5)], grid, below_from_cascade=True)
    with_square = curve_points(_far_cascade(twin), [PGD(steps=5), Square(n_queries=100)], grid,
                               below_from_cascade=True)
    assert gradients_only[1].accuracy == gradients_only[0].accuracy  # PGD gets no gradient: nothing falls
    assert with_square[1].accuracy <= gradients_only[1].accuracy - 0.15  # Square does not need one
    assert with_square[1].attacked == gradients_only[1].attacked > 0
