"""`bastion evaluate --defense/--ensemble` and `bastion attack --defense/--adaptive` from the command line."""

from __future__ import annotations

import json

from bastion.cli import main
from bastion.evaluate.report_schema import stage_result

FAST = ["--data", "mnist-sample", "--limit", "16", "--eps", "0.3", "--suite", "pgd", "--steps", "5", "--restarts",
        "1", "--curve-points", "0", "--quiet"]


def test_evaluate_with_repeated_defenses_writes_the_verdict(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = main(["evaluate", "--model", "zoo:mnist-cnn", "--defense", "round:levels=255", "--defense",
                 "bit-depth:bits=8", *FAST, "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["defense"] == ["round:levels=255", "bit-depth:bits=8"]
    verdict = report["verdict"]
    assert verdict["verdict"] in ("broken", "suspicious") and verdict["escalated"]
    assert [d["name"] for d in verdict["defenses"]] == ["round", "bit-depth"]
    assert verdict["robust_accuracy"] < verdict["flattering_accuracy"]
    assert "verdict" in capsys.readouterr().out
    assert 'id="verdict"' in (out / "report.html").read_text()


def test_evaluate_an_ensemble_of_model_specs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["evaluate", "--ensemble", "zoo:mnist-cnn", "zoo:mnist-cnn-at", "--ensemble-mode", "probs", *FAST,
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["model"] == "ensemble[probs](zoo:mnist-cnn, zoo:mnist-cnn-at)"
    members = stage_result(report, "members")["members"]
    assert [m["name"] for m in members] == ["zoo:mnist-cnn", "zoo:mnist-cnn-at"]


def test_bad_defense_specs_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for spec, message in (("jpg", "unknown defense 'jpg'; choose one of:"), ("median:width=3", "its options: size")):
        assert main(["evaluate", "--model", "zoo:mnist-cnn", "--defense", spec, *FAST]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["evaluate", "--model", "zoo:mnist-cnn", "--ensemble", "zoo:mnist-cnn", *FAST]) == 2
    assert "not both" in capsys.readouterr().err


def test_attack_command_applies_defenses_and_bpda(capsys):
    args = ["attack", "pgd", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "8", "--eps", "0.3",
            "--steps", "5", "--defense", "round", "--quiet"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--adaptive"]) == 0
    adaptive = json.loads(capsys.readouterr().out)
    assert plain["robust_accuracy"] > 0.8 and adaptive["robust_accuracy"] < 0.2
