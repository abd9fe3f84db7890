"""`bastion certify` and `bastion train` record their runs too, and certify runs gate on certified accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.cli import main
from bastion.history import RunStore

CERTIFY = ["certify", "--model", "zoo:mnist-cnn-noise", "--data", "mnist-sample", "--limit", "4", "--n0", "10",
           "--n", "60", "--batch-size", "60", "--sigma", "0.5", "--radii", "0,0.25,0.5", "--quiet"]


def test_certify_runs_are_recorded_and_gated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*CERTIFY, "--out", str(tmp_path / "runs" / "c1")]) == 0
    capsys.readouterr()
    assert main([*CERTIFY, "--out", str(tmp_path / "runs" / "c2"), "--baseline", "last", "--max-drop", "0"]) == 0
    out = capsys.readouterr().out
    assert "certified_accuracy@0.25" in out and "gate passed" in out  # same seed, same certificates
    runs = RunStore(tmp_path / "runs" / "bastion.db").runs()
    assert [r.kind for r in runs] == ["certify", "certify"] and runs[1].gate == "pass"
    assert runs[0].threat == "l2 sigma=0.5" and runs[0].model == "zoo:mnist-cnn-noise"
    assert runs[0].metrics["certified_accuracy@0"] == runs[0].result["summary"]["certified_accuracy"][0]["accuracy"]
    assert runs[0].report_path and runs[0].report_path.endswith("certify.html")


def test_train_runs_are_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ckpt"
    code = main(["train", "--model", "bastion.models.nets:MnistCNN", "--method", "standard", "--data",
                 "mnist-sample:train", "--limit", "64", "--epochs", "1", "--check-size", "0", "--val-limit", "16",
                 "--eps", "0.3", "--eval-steps", "2", "--out", str(out), "--db", str(tmp_path / "h.db"), "--quiet"])
    assert code == 0
    assert "history: recorded train run" in capsys.readouterr().out
    (run,) = RunStore(tmp_path / "h.db").runs()
    assert run.kind == "train" and run.threat == "linf eps=0.3"
    assert set(run.metrics) == {"clean_accuracy", "robust_accuracy"}
    assert run.model_fingerprint == run.result["model"]["fingerprint"]
    assert run.report_path == str((out / "training.html").resolve())
