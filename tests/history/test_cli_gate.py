"""The regression gate through the CLI, on real evaluations of a robust and a non-robust checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.cli import main
from bastion.history import RunStore

FAST = ["--data", "mnist-sample", "--limit", "24", "--suite", "pgd", "--curve-points", "0", "--steps", "5",
        "--restarts", "1", "--gallery", "0", "--quiet"]


def evaluate(tmp_path: Path, model: str, *extra: str) -> int:
    """`bastion evaluate` of a zoo checkpoint, every checkpoint under the model name "mnist"."""
    out = tmp_path / "runs" / f"{model.removeprefix('zoo:')}-{len(list(tmp_path.glob('runs/*')))}"
    return main(["evaluate", "--model", model, "--model-name", "mnist", *FAST, "--out", str(out), *extra])


def run_ids(tmp_path: Path) -> list[str]:
    return [r.run_id for r in RunStore(tmp_path / "runs" / "bastion.db").runs()]


def test_non_robust_checkpoint_fails_against_the_robust_baseline(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate(tmp_path, "zoo:mnist-cnn-at") == 0
    assert "history: recorded evaluate run" in capsys.readouterr().out
    assert evaluate(tmp_path, "zoo:mnist-cnn", "--baseline", "last", "--max-drop", "0.02") == 1
    out = capsys.readouterr().out
    table = out[out.index("gate:"):]
    assert "metric" in table and "allowed" in table
    assert "robust_accuracy dropped by" in table and "gate FAILED" in table
    robust_line = next(line for line in table.splitlines() if line.startswith("robust_accuracy"))
    assert "REGRESSED" in robust_line and "0.0200" in robust_line
    clean_line = next(line for line in table.splitlines() if line.startswith("clean_accuracy"))
    assert clean_line.endswith("ok")
    runs = RunStore(tmp_path / "runs" / "bastion.db").runs()  # the default database: beside the --out folders
    assert [r.model_spec for r in runs] == ["zoo:mnist-cnn-at", "zoo:mnist-cnn"]
    assert [r.gate for r in runs] == [None, "fail"]
    assert runs[0].model_fingerprint != runs[1].model_fingerprint
    assert runs[1].result == json.loads((Path(runs[1].out_dir or "") / "report.json").read_text())

    first, second = run_ids(tmp_path)  # the same table on demand, both ways round
    assert main(["compare", first, second, "--db", str(tmp_path / "runs" / "bastion.db")]) == 1
    assert "robust_accuracy dropped by" in capsys.readouterr().out
    assert main(["compare", second, first, "--db", str(tmp_path / "runs" / "bastion.db")]) == 0
    assert "gate passed" in capsys.readouterr().out


def test_robust_checkpoint_passes_against_the_non_robust_baseline(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate(tmp_path, "zoo:mnist-cnn", "--baseline", "last") == 0  # no baseline yet: nothing to compare
    assert "nothing to compare with" in capsys.readouterr().out
    assert evaluate(tmp_path, "zoo:mnist-cnn-at", "--baseline", "last", "--max-drop", "0.02") == 0
    out = capsys.readouterr().out
    assert "gate passed" in out and "REGRESSED" not in out
    assert [r.gate for r in RunStore(tmp_path / "runs" / "bastion.db").runs()] == [None, "pass"]


def test_gate_thresholds_from_the_toml_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate(tmp_path, "zoo:mnist-cnn-at") == 0
    robust_id = run_ids(tmp_path)[0]
    config = tmp_path / "eval.toml"
    config.write_text(f'eps = 0.3\n[gate]\nbaseline = "{robust_id}"\nrobust = 1.0\nclean = 0.1\n')
    assert evaluate(tmp_path, "zoo:mnist-cnn", "--config", str(config)) == 0  # robust may drop by up to 1.0
    assert "gate passed" in capsys.readouterr().out
    config.write_text(f'eps = 0.3\n[gate]\nbaseline = "{robust_id}"\nrobust = 1.0\nclass_floor = 0.5\n')
    assert evaluate(tmp_path, "zoo:mnist-cnn", "--config", str(config)) == 1
    out = capsys.readouterr().out
    assert "robust accuracy" in out and "under the floor 50.00%" in out


def test_user_errors_exit_2_before_evaluating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate(tmp_path, "zoo:mnist-cnn", "--no-db", "--baseline", "last") == 2
    assert "needs the run history" in capsys.readouterr().err
    assert evaluate(tmp_path, "zoo:mnist-cnn", "--baseline", "no-such-run", "--db", str(tmp_path / "h.db")) == 2
    assert "no run history" in capsys.readouterr().err
    assert evaluate(tmp_path, "zoo:mnist-cnn", "--max-drop", "5") == 2
    assert "max_drop must lie in [0, 1]" in capsys.readouterr().err
    assert not list(tmp_path.glob("runs/*/report.json"))  # nothing was evaluated
    assert evaluate(tmp_path, "zoo:mnist-cnn", "--no-db") == 0
    assert not (tmp_path / "runs" / "bastion.db").exists()
