"""--mlflow logs the run, its metrics and its reports to a local MLflow store (the real mlflow package)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bastion.cli import main
from tests.history.test_cli_gate import FAST


def test_evaluate_logs_to_a_local_mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # restored after the test (bastion sets it for file URIs)
    monkeypatch.chdir(tmp_path)  # the default store is ./mlruns
    out = tmp_path / "runs" / "at"
    assert main(["evaluate", "--model", "zoo:mnist-cnn-at", *FAST, "--out", str(out), "--mlflow"]) == 0
    assert "mlflow: logged run" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("bastion")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == report["run_id"] and run.info.status == "FINISHED"
    assert run.data.metrics["robust_accuracy"] == pytest.approx(report["summary"]["robust_accuracy"])
    assert run.data.metrics["clean_accuracy"] == pytest.approx(report["summary"]["clean_accuracy"])
    assert run.data.params["model_spec"] == "zoo:mnist-cnn-at" and run.data.params["threat"] == "linf eps=0.3"
    assert run.data.params["config.steps"] == "5"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"report.json", "report.html"}

    other = tmp_path / "elsewhere"  # --mlflow-uri: a folder of its own; --no-db leaves MLflow logging alone
    assert main(["evaluate", "--model", "zoo:mnist-cnn", *FAST, "--out", str(tmp_path / "runs" / "std"), "--mlflow",
                 "--mlflow-uri", str(other), "--no-db"]) == 0
    elsewhere = MlflowClient(tracking_uri=other.as_uri())
    experiment = elsewhere.get_experiment_by_name("bastion")
    assert experiment is not None
    assert len(elsewhere.search_runs([experiment.experiment_id])) == 1
    assert len(client.search_runs([client.get_experiment_by_name("bastion").experiment_id])) == 1


def test_missing_mlflow_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    assert main(["evaluate", "--model", "zoo:mnist-cnn", *FAST, "--out", str(tmp_path / "r"), "--mlflow"]) == 2
    assert capsys.readouterr().err.strip() == "bastion: error: --mlflow needs the mlflow package: pip install " \
        "'bastion[mlflow]'"
    assert not (tmp_path / "r").exists()
