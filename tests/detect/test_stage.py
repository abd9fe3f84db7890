"""The evaluation stage: JSON-ready results the pipeline can store, and their HTML section."""

import json

import torch

from bastion.attacks import FGSM, PGD
from bastion.data import ImageSet
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stages.detection_html import detection_section_html
from bastion.evaluate.stages.detection_run import AdversarialSet, collect_adversarial, detection_stage
from bastion.threat import ThreatModel


def _ctx(model, n=80, seed=0):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x).argmax(1)
    data = ImageSet(x, y, ["a", "b", "c", "<d>"], "toy")
    return EvalContext(model, data, ThreatModel("linf", 0.2), torch.device("cpu"), torch.float32, batch_size=32)


def test_stage_splits_calibrates_rates_and_attacks(tiny_cnn):
    ctx = _ctx(tiny_cnn)
    section = detection_stage(ctx, fpr=0.1, attacks=[PGD(steps=5), FGSM()], adaptive_steps=5, adaptive_limit=10)
    json.dumps(section, allow_nan=False)
    settings = section["settings"]
    assert settings["n_calibration"] == 40 and settings["n_held_out"] == 40 and settings["attacks"] == ["pgd", "fgsm"]
    assert set(section["detectors"]) == {"feature-squeezing", "confidence", "entropy", "margin"}
    for entry in section["detectors"].values():
        assert entry["calibration_fpr"] <= 0.1 and entry["n_clean"] == 40
        assert set(entry["attacks"]) == {"pgd", "fgsm"}
        row = entry["attacks"]["pgd"]
        assert row["n_attacked"] == 40 and row["n_detected"] <= row["n_success"] <= row["n_attacked"]
        assert entry["adaptive"]["n_attacked"] == 10
    html = detection_section_html(section)
    assert html.count("<tr>") == 1 + 4 and "detected: pgd" in html and "detected: adaptive" in html


def test_stage_reuses_given_examples_and_calibration_set(tiny_cnn):
    ctx = _ctx(tiny_cnn, n=30)
    calibration = _ctx(tiny_cnn, n=50, seed=1).data
    indices = torch.arange(30)
    given = {"pgd": collect_adversarial(ctx, PGD(steps=3), indices, stream="pgd"),
             "none": AdversarialSet(indices, ctx.data.images.float(), torch.zeros(30, dtype=torch.bool))}
    section = detection_stage(ctx, given, fpr=0.1, detectors=["margin"], calibration=calibration, adaptive_steps=0)
    entry = section["detectors"]["margin"]
    assert section["settings"]["n_calibration"] == 50 and entry["n_clean"] == 30
    assert entry["attacks"]["none"]["rate"] is None and "adaptive" not in entry
    assert entry["attacks"]["pgd"]["n_success"] == int(given["pgd"].success.sum())


def test_html_escapes_and_handles_missing_parts():
    section = {"settings": {"fpr": 0.05, "calibration": "<script>"},
               "detectors": {"<b>x</b>": {"threshold": 0.1, "attacks": {"pgd": {"rate": 0.5, "n_success": 2}}}},
               "warnings": ["a <warning>"]}
    html = detection_section_html(section)
    assert "<script>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "&lt;warning&gt;" in html
    assert "50.0%" in html
    assert "No detection run" in detection_section_html({})


def test_stage_after_the_clean_stage_attacks_only_correct_points(tiny_cnn):
    from bastion.evaluate.stages import CleanStage

    ctx = _ctx(tiny_cnn, n=40)
    labels = ctx.data.labels.clone()
    labels[::4] = (labels[::4] + 1) % 4  # a quarter of the points misclassified
    ctx.data = ImageSet(ctx.data.images, labels, ctx.data.classes, "toy")
    CleanStage().run(ctx)
    section = detection_stage(ctx, fpr=0.1, detectors=["confidence"], attacks=[PGD(steps=3)], adaptive_steps=2)
    entry = section["detectors"]["confidence"]
    held_out = section["settings"]["n_held_out"]
    assert entry["n_clean"] == held_out == 20
    assert entry["attacks"]["pgd"]["n_attacked"] < held_out  # misclassified points are not attacked
    assert entry["adaptive"]["n_attacked"] == entry["attacks"]["pgd"]["n_attacked"]
