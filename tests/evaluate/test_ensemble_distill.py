"""An ensemble attacked as one model next to its members; defensive distillation caught by the verdict."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks import PGD
from bastion.data import load_dataset
from bastion.defenses import Ensemble
from bastion.evaluate import EvalConfig, EvalResult, evaluate_model
from bastion.report import render_html
from bastion.report.terminal import format_result
from bastion.threat import ThreatModel
from tests.evaluate._trained import distilled_cnn, trained_cnn


def _config(**options):
    settings = {"model": "m", "data": "mnist-sample", "eps": 0.1, "steps": 10, "restarts": 1, "suite": "pgd",
                "curve_points": 0, "batch_size": 64, "blackbox_queries": 100, **options}
    return EvalConfig.build(**settings)


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-sample", limit=48)


def _accuracy(model, data):
    x, y = data.batch(slice(None))
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_an_ensemble_is_attacked_as_one_model_next_to_each_member(data):
    members = [trained_cnn(0), trained_cnn(1)]
    assert not torch.equal(members[0][0].weight, members[1][0].weight)  # differently seeded
    ensemble = Ensemble(members, mode="logits", names=["seed-0", "seed-1"])
    result = evaluate_model(ensemble, data, _config())
    section = result.stage_results["members"].to_dict()
    assert section is not None and section["mode"] == "logits"
    assert [m["name"] for m in section["members"]] == ["seed-0", "seed-1"]
    for member, model in zip(section["members"], members, strict=True):
        assert member["clean_accuracy"] == pytest.approx(_accuracy(model, data))
        assert 0 <= member["robust_accuracy"] <= member["clean_accuracy"]
    assert section["robust_accuracy"] == result.summary.robust_accuracy
    assert section["clean_accuracy"] == pytest.approx(_accuracy(ensemble, data))
    pgd = next(a for a in result.attacks if a.name == "pgd")
    assert pgd.passes["backward"] > 0  # the attack differentiated through the whole ensemble
    assert "seed-1" in format_result(result.to_dict()) and 'id="ensemble"' in render_html(result.to_dict())
    assert EvalResult.from_dict(result.to_dict()) == result


def test_a_voting_ensemble_is_attacked_with_bpda(data):
    ensemble = Ensemble([trained_cnn(0), trained_cnn(1)], mode="vote")
    result = evaluate_model(ensemble, data, _config(eps=0.3))
    assert "zero-gradients" in {f.check for f in result.verdict.fired}
    assert result.verdict.adaptive["bpda"] == ["ensemble:probs"]
    assert result.summary.robust_accuracy <= 0.1


def test_defensive_distillation_looks_robust_to_cross_entropy_but_falls_to_the_margin_loss(data):
    student = distilled_cnn(100.0)
    x, y = data.batch(slice(None))
    threat = ThreatModel("linf", 0.3)
    ce = PGD(steps=20, loss="ce")(student, x, y, threat, generator=torch.Generator().manual_seed(0))
    margin = PGD(steps=20, loss="cw")(student, x, y, threat, generator=torch.Generator().manual_seed(0))
    clean = _accuracy(student, data)
    assert clean > 0.8
    # Softmax saturation at T=1: cross-entropy gradients underflow, the C&W margin's do not.
    assert 1 - ce.success.float().mean() > 0.4
    assert margin.success.float().mean() >= clean - 0.05
    result = evaluate_model(student, data, _config(eps=0.3))
    verdict = result.verdict
    assert "vanishing-gradients" in {f.check for f in verdict.fired} and verdict.verdict == "broken"
    assert verdict.flattering_accuracy > 0.3 and verdict.robust_accuracy <= 0.05
    assert any(a.settings.get("loss") == "cw" and a.fooled > 0 for a in result.attacks)
