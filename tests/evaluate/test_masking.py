"""The gradient-masking verdict on the bundled models: defenses that only break gradients are caught and
escalated to the undefended model's robust accuracy; an adversarially trained model raises no false alarm."""

from __future__ import annotations

import pytest

from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, EvalResult, evaluate_model
from bastion.models import load_zoo_model
from bastion.report import render_html
from bastion.report.terminal import format_result

LIMIT = 48


def _config(**options):
    settings = {"model": "zoo:mnist-cnn", "data": "mnist-sample", "eps": 0.3, "steps": 10, "restarts": 1,
                "suite": "pgd", "curve_points": 3, "batch_size": 64, **options}
    return EvalConfig.build(**settings)


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-sample", limit=LIMIT)


@pytest.fixture(scope="module")
def undefended(data):
    return evaluate_model(load_zoo_model("mnist-cnn"), data, _config())


@pytest.mark.parametrize("defense", ["jpeg:quality=75", "round:levels=255"])
def test_gradient_breaking_defenses_are_caught_and_escalated(defense, data, undefended):
    result = evaluate_model(load_zoo_model("mnist-cnn"), data, _config(defense=(defense,)))
    verdict = result.verdict
    pgd = next(a for a in result.attacks if a.role == "main attack")
    # Plain PGD is fooled by the defense: the model looks robust ...
    assert pgd.robust_accuracy >= 0.8 and verdict.flattering_accuracy == pgd.robust_accuracy
    # ... the checks see why, bastion escalates by itself, and reports the escalated number.
    assert verdict.verdict in ("broken", "suspicious") and verdict.escalated
    fired = {f.check for f in verdict.fired}
    assert "zero-gradients" in fired and all(f.action.startswith("escalated") for f in verdict.fired)
    assert verdict.adaptive["bpda"] == [f"{defense.split(':')[0]}:identity"]
    assert result.summary.robust_accuracy == verdict.robust_accuracy == result.attacks[-1].robust_accuracy
    assert any(a.role.startswith("escalation") and a.fooled > 0 for a in result.attacks)
    assert abs(verdict.robust_accuracy - undefended.summary.robust_accuracy) <= 0.05
    assert undefended.summary.robust_accuracy <= 0.05  # the undefended mnist-cnn has no robustness at 0.3
    assert result.summary.model == f"zoo:mnist-cnn + {defense}"
    text, page = format_result(result.to_dict()), render_html(result.to_dict())
    assert "verdict BROKEN" in text or "verdict SUSPICIOUS" in text
    assert 'id="verdict"' in page and "flattering" in page
    assert EvalResult.from_dict(result.to_dict()) == result


def test_no_false_alarm_on_the_adversarially_trained_model(data):
    result = evaluate_model(load_zoo_model("mnist-cnn-at"), data, _config(model="zoo:mnist-cnn-at", restarts=2))
    verdict = result.verdict
    assert verdict.verdict == "reliable", [f.detail for f in verdict.fired]
    assert not verdict.escalated and not verdict.fired
    assert verdict.robust_accuracy == verdict.flattering_accuracy == result.summary.robust_accuracy
    assert result.summary.robust_accuracy > 0.6
    assert not any(a.role.startswith("escalation") for a in result.attacks)
    assert {f.check for f in verdict.findings} >= {"randomness", "probabilities", "zero-gradients",
                                                   "vanishing-gradients", "fgsm-stronger", "large-eps",
                                                   "black-box-stronger", "curve-evidence"}
    assert "verdict RELIABLE" in format_result(result.to_dict())
