"""The extended suite: every section present with its threat model, budget and success rate."""

import json

import pytest
import torch

from bastion.data import ImageSet
from bastion.errors import InputError
from bastion.evaluate.config import EvalConfig
from bastion.evaluate.context import EvalContext
from bastion.evaluate.report_schema import attack_rows, stage_result
from bastion.evaluate.stages import CleanStage
from bastion.evaluate.stages.extended_html import extended_sections
from bastion.evaluate.stages.extended_run import DEFAULTS, ExtendedOptions, extended_stage
from bastion.threat import ThreatModel

TINY = {"patch_steps": 3, "patch_placements": 2, "spatial_angles": 3, "spatial_translations": 3, "spatial_steps": 2,
        "corruptions": ["contrast", "gaussian-noise"], "severities": [1, 5], "max_points": 4,
        "onepixel_population": 10, "onepixel_steps": 2, "hsj_queries": 60, "gallery": 2, "universal_epochs": 1}
NAMES = ["patch", "spatial", "corruptions", "onepixel", "universal", "hopskipjump"]


def toy_data(model, n=16):
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 4  # two clean errors
    return ImageSet(x, y, ["a", "b", "c", "d"], "toy")


def run_stage(model, extra):
    data = toy_data(model)
    ctx = EvalContext(model, data, ThreatModel("linf", 0.3), torch.device("cpu"), torch.float32, batch_size=8)
    CleanStage().run(ctx)
    return ctx, extended_stage(ctx, ExtendedOptions(extended_budget=extra))


def test_every_section_reports_threat_model_budget_and_success_rate(tiny_cnn):
    ctx, result = run_stage(tiny_cnn, TINY)
    json.dumps(result, allow_nan=False)  # JSON-able
    sections = {s["name"]: s for s in result["sections"]}
    assert list(sections) == NAMES
    for name, section in sections.items():
        if section["skipped"]:
            assert name in ("onepixel", "universal", "hopskipjump")  # only the optional attacks may be absent
            continue
        assert section["threat_model"] and section["budget"]
        assert 0 <= section["success_rate"] <= 1 and 0 <= section["accuracy"] <= 1
    assert sections["spatial"]["attacked"] == 14  # the correctly classified points
    if not sections["universal"]["skipped"]:
        assert sections["universal"]["attacked"] == 8  # measured on the held-out half only
    patch = sections["patch"]
    assert patch["details"]["split"].startswith("trained on the first 8")
    assert patch["details"]["patch_png"].startswith("data:image/png;base64,")
    assert len(patch["gallery"]) == 2
    spatial = sections["spatial"]["details"]
    assert spatial["accuracy_worst_case"] <= min(spatial["accuracy_grid"], spatial["accuracy_first_order"])
    assert spatial["accuracy_worst_case"] <= 14 / 16
    html = "".join(extended_sections(result))
    assert 'id="extended"' in html and 'id="extended-patch"' in html and "<script" not in html


def test_unknown_settings_are_refused(tiny_cnn):
    with pytest.raises(InputError, match="unknown extended-suite setting"):
        run_stage(tiny_cnn, {"patch_stepz": 3})
    assert set(TINY) <= set(DEFAULTS)


def test_suite_extended_adds_its_sections_to_report_json_and_html(tiny_cnn, tmp_path):
    from bastion.evaluate import EvalResult, evaluate_model
    from bastion.report import write_html

    config = EvalConfig.build(model="tiny", data="toy", eps=0.05, steps=2, restarts=1, curve_points=0, batch_size=8,
                              suite="extended", aa_steps=2, aa_queries=20, extended_budget=TINY)
    report = json.loads(evaluate_model(tiny_cnn, toy_data(tiny_cnn), config, state_dir=tmp_path).to_json())
    assert [s["name"] for s in stage_result(report, "extended")["sections"]] == NAMES
    assert stage_result(report, "extended")["settings"]["patch_steps"] == TINY["patch_steps"]
    assert any(a["role"].startswith("autoattack") for a in attack_rows(report))  # the standard suite still runs
    assert EvalResult.from_dict(report).stage_results["extended"].to_dict() == stage_result(report, "extended")
    html = write_html(report, tmp_path / "report.html").read_text()
    assert 'id="extended"' in html and 'id="extended-spatial"' in html


def test_evaluate_command_runs_the_extended_suite(tmp_path):
    from bastion.cli import main

    config = tmp_path / "budget.toml"
    config.write_text("[evaluate]\nextended_budget = { patch_steps = 2, spatial_angles = 3, spatial_translations = 3, "
                      "spatial_steps = 2, corruptions = [\"jpeg\"], severities = [5], max_points = 2, "
                      "onepixel_population = 8, onepixel_steps = 1, hsj_queries = 40, universal_epochs = 1, "
                      "patch_train_limit = 16 }\n")
    out = tmp_path / "run"
    code = main(["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "6", "--suite",
                 "extended", "--extended-train-data", "mnist-sample:train", "--config", str(config), "--steps", "1",
                 "--restarts", "1", "--curve-points", "0", "--aa-steps", "2", "--aa-queries", "10", "--quiet",
                 "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    sections = {s["name"]: s for s in stage_result(report, "extended")["sections"]}
    assert sections["patch"]["details"]["split"].startswith("trained on 16 points of mnist-sample:train")
    assert sections["patch"]["attacked"] <= 6
    assert 'id="extended-patch"' in (out / "report.html").read_text()


def test_terminal_table_lists_each_section(tiny_cnn):
    from bastion.report.terminal import _extended_lines

    _, result = run_stage(tiny_cnn, TINY)
    lines = _extended_lines(result)
    body = lines[4:]  # blank line, title, header, rule
    assert [line.split()[0] for line in body] == NAMES
    patch = next(s for s in result["sections"] if s["name"] == "patch")
    assert f"{patch['success_rate']:.2%}" in body[0]
