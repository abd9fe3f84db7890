"""Points broken by the black-box check count as broken, whether or not the check fires."""

from __future__ import annotations

import torch

from bastion.attacks import PGD
from bastion.data import load_dataset
from bastion.evaluate import masking
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stages import ChecksStage, CleanStage
from bastion.evaluate.stages.checks import count_check_hits
from bastion.models import load_model
from bastion.threat import ThreatModel


def test_points_the_check_breaks_leave_the_robust_set_even_below_its_firing_threshold():
    model = load_model("zoo:mnist-cnn").module
    data = load_dataset("mnist-sample", limit=2)  # two points: too few for the check to fire (it needs 3)
    ctx = EvalContext(model, data, ThreatModel("linf", 0.3), torch.device("cpu"), torch.float32, batch_size=8)
    CleanStage().run(ctx)
    assert bool(ctx.robust.all())  # as if the white-box cascade had broken nothing
    hits: list[int] = []
    finding = masking.blackbox_finding(ctx, PGD(steps=20), limit=16, stream="black-box", hits=hits)
    assert not finding.fired and "broke 2 point(s)" in finding.detail
    assert sorted(hits) == [0, 1] and bool(ctx.robust.all())  # the check itself leaves the cascade's state alone
    records = count_check_hits(ctx, {"pgd": hits})
    assert not bool(ctx.robust.any())
    assert len(records) == 1 and records[0].fooled == 2 and records[0].robust_accuracy == 0.0


def test_blackbox_points_caps_the_points_the_black_box_check_attacks():
    model = load_model("zoo:mnist-cnn").module
    ctx = EvalContext(model, load_dataset("mnist-sample", limit=12), ThreatModel("linf", 0.05), torch.device("cpu"),
                      torch.float32, batch_size=8)
    CleanStage().run(ctx)
    capped = ChecksStage(probe_points=10, blackbox_points=4, blackbox_queries=5).run(ctx)
    detail = next(f.detail for f in capped.findings if f.check == "black-box-stronger")
    assert "of 4 correct points" in detail
