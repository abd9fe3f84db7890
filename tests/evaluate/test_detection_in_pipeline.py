"""`evaluate --detect`: the detectors' section in report.json, report.html and the terminal table."""

from __future__ import annotations

import pytest

from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.evaluate.report_schema import stage_result
from bastion.models import load_model
from bastion.report.html import render_html
from bastion.report.terminal import format_result


@pytest.fixture(scope="module")
def report():
    model = load_model("zoo:mnist-cnn").module
    data = load_dataset("mnist-sample", limit=60)
    config = EvalConfig.build(eps=0.3, suite="pgd", steps=10, restarts=1, curve_points=0, detect=True,
                              detect_adaptive_limit=10)
    return evaluate_model(model, data, config).to_dict()


def test_every_detector_is_rated_on_fgsm_pgd_and_the_adaptive_attack(report):
    section = stage_result(report, "detection")
    assert section["settings"]["attacks"] == ["fgsm", "pgd"] and section["settings"]["fpr"] == 0.05
    assert set(section["detectors"]) == {"feature-squeezing", "confidence", "entropy", "margin"}
    for entry in section["detectors"].values():
        pgd = entry["attacks"]["pgd"]
        assert 0 <= pgd["n_detected"] <= pgd["n_success"] <= pgd["n_attacked"]
        assert pgd["rate"] == pytest.approx(pgd["n_detected"] / pgd["n_success"])
        assert entry["adaptive"]["n_attacked"] == 10
        assert entry["calibration_fpr"] <= 0.05  # the conformal threshold's guarantee on its own data


def test_report_page_and_terminal_show_the_detectors(report):
    page = render_html(report)
    text = format_result(report)
    for name in ("feature-squeezing", "confidence", "entropy", "margin"):
        assert name in page and name in text
    assert "adaptive detected" in text and "pgd detected" in text


def test_bad_false_positive_rate_is_refused():
    for fpr in (0.0, 1.0, -0.1):
        with pytest.raises(InputError, match="detect_fpr"):
            EvalConfig.build(detect=True, detect_fpr=fpr)
