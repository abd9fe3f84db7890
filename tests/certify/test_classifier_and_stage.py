"""The smoothed classifier as a model, the certified-accuracy summary, the evaluation stage and the HTML."""

import json

import pytest
import torch

from bastion.certify import Smooth, SmoothedClassifier, certified_accuracy, summarize
from bastion.certify.summary import parse_radii
from bastion.data import ImageSet
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stages.certify_html import certify_section
from bastion.evaluate.stages.certify_run import certify_stage, l2_radius_covering
from bastion.models.checks import checked_logits
from bastion.report.pages import render_certify_html
from bastion.threat import ThreatModel
from tests.certify.test_smoothing import _at_distance, _linear


def test_smoothed_classifier_votes_abstains_and_is_deterministic_per_input():
    model = SmoothedClassifier(_linear(), 2, sigma=0.5, n=1000, alpha=0.001)
    x = torch.stack([_at_distance(d) for d in (0.4, 0.0, -0.4)])
    scores = checked_logits(model, x, 2)
    assert scores.shape == (3, 3)
    assert scores.argmax(1).tolist() == [1, 2, 0]  # class 1, abstain (column 2), class 0
    assert torch.allclose(scores[:, :2].sum(1), torch.ones(3))
    assert torch.equal(model(x.flip(0)), scores.flip(0))  # same input, same answer, wherever it sits
    assert torch.equal(model(x[:1]), scores[:1])


def test_smoothed_classifier_matches_predict_decisions(tiny_cnn, toy_batch):
    x, _ = toy_batch
    model = SmoothedClassifier(tiny_cnn, 4, sigma=0.25, n=200, alpha=0.01)
    decisions = model(x).argmax(1)
    counts = torch.stack([model(x[i : i + 1])[0, :4] * 200 for i in range(len(x))]).round().long()
    expected = [4 if d == Smooth.ABSTAIN else d for d in Smooth(tiny_cnn, 4, 0.25).decide(counts, 0.01)]
    assert decisions.tolist() == expected


def test_certified_accuracy_counts_correct_points_at_or_above_each_radius():
    predictions, radii, labels = [1, 1, -1, 0, 2], [0.2, 0.8, 0.0, 1.5, 0.3], [1, 1, 1, 0, 0]
    table = certified_accuracy(predictions, radii, labels, [0.0, 0.5, 1.0, 2.0])
    assert [p["accuracy"] for p in table] == [0.6, 0.4, 0.2, 0.0]
    rows = [{"prediction": p, "radius": r, "label": y, "seconds": 1.0}
            for p, r, y in zip(predictions, radii, labels, strict=True)]
    summary = summarize(rows, [0.0], sigma=0.5, n=1000, alpha=0.001)
    assert summary["abstain_rate"] == 0.2 and summary["accuracy"] == 0.6 and summary["seconds_per_image"] == 1.0


def test_parse_radii():
    assert parse_radii("1,0, 0.5") == [0.0, 0.5, 1.0]
    assert parse_radii(None) == [0.0, 0.5, 1.0, 1.5, 2.0]
    for bad in ("a,b", "-1", ""):
        with pytest.raises(InputError):
            parse_radii(bad)


def _ctx(norm="l2", eps=0.2):
    x = torch.stack([_at_distance(d) for d in (0.6, 0.1, -0.5, 0.0)])
    data = ImageSet(x, torch.tensor([1, 1, 0, 1]), ["0", "1"], "toy")
    return EvalContext(_linear(), data, ThreatModel(norm, eps), torch.device("cpu"), torch.float32, batch_size=4)


def test_stage_certified_at_threat_is_below_empirical_and_json_ready():
    ctx = _ctx()
    ctx.correct = torch.tensor([True, True, True, False])
    ctx.robust = torch.tensor([True, False, True, False])
    result = certify_stage(ctx, sigma=0.25, n0=50, n=5000, attack_steps=5, attack_samples=8, attack_votes=500)
    json.dumps(result, allow_nan=False)
    assert [r["prediction"] for r in result["rows"]] == [1, 1, 0, -1]
    assert result["certified_at_threat"] == 0.5  # distances 0.6 and 0.5 exceed eps 0.2; 0.1 does not
    empirical = result["comparison"][-1]["accuracy"]
    assert "SmoothAdv" in result["comparison"][-1]["what"] and empirical >= result["certified_at_threat"]
    assert empirical == 0.5 and len(result["comparison"]) == 4 and not result["warnings"]


def test_stage_maps_linf_to_the_covering_l2_ball():
    ctx = _ctx("linf", 0.01)
    assert l2_radius_covering(ctx.threat, (1, 4, 4)) == pytest.approx(0.04)
    result = certify_stage(ctx, sigma=0.25, n0=20, n=500)
    assert result["threat_radius"] == pytest.approx(0.04) and len(result["comparison"]) == 1


def test_html_section_and_page_are_self_contained_and_escaped():
    report = {"settings": {"sigma": 0.5, "n": 1000, "alpha": 0.001},
              "summary": summarize([{"prediction": 1, "radius": 0.4, "label": 1}], [0.0, 0.5], sigma=0.5, n=1000,
                                   alpha=0.001),
              "rows": [{"radius": 0.4, "correct": True}],
              "comparison": [{"what": "<script>", "accuracy": 0.5}],
              "provenance": {"model": {"spec": "zoo:<b>"}}}
    section = certify_section(report)
    assert 'id="certified-curve"' in section and "&lt;script&gt;" in section and "<script>" not in section
    page = render_certify_html(report)
    assert page.startswith("<!DOCTYPE html>") and "zoo:&lt;b&gt;" in page and "default-src 'none'" in page
    assert "No certification run" in certify_section({})
