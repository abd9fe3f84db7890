"""Log a run to MLflow (optional extra `bastion[mlflow]`): parameters, metrics, and the report files as artifacts."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion.errors import InputError
from bastion.history.record import RunRecord

__all__ = ["DEFAULT_URI", "EXPERIMENT", "check_mlflow", "log_to_mlflow", "tracking_uri"]

DEFAULT_URI = "mlruns"
EXPERIMENT = "bastion"


def check_mlflow() -> Any:
    """Import mlflow, or raise a one-line InputError naming the extra to install."""
    try:
        import mlflow
    except ImportError:
        raise InputError("--mlflow needs the mlflow package: pip install 'bastion[mlflow]'") from None
    return mlflow


def tracking_uri(uri: str | None) -> str:
    """A tracking URI from `--mlflow-uri`: a URI with a scheme as is, a folder as a `file:` URI (default mlruns/)."""
    text = uri or DEFAULT_URI
    if "://" in text or text.startswith("file:") or text.startswith("databricks"):
        return text
    return Path(text).resolve().as_uri()


def _params(record: RunRecord) -> dict[str, str]:
    params: dict[str, Any] = {"kind": record.kind, "model": record.model, "model_spec": record.model_spec,
                              "model_fingerprint": record.model_fingerprint, "data": record.data,
                              "data_fingerprint": record.data_fingerprint, "threat": record.threat,
                              "norm": record.norm, "eps": record.eps, "git_commit": record.git_commit,
                              "bastion_run_id": record.run_id}
    settings = record.result.get("config") or record.result.get("settings") or record.result.get("hyperparameters")
    if isinstance(settings, dict):
        params.update({f"config.{k}": v for k, v in settings.items() if not isinstance(v, (dict, list))})
    return {k: str(v)[:500] for k, v in params.items() if v is not None}


def _metric_name(name: str) -> str:
    """MLflow metric names allow letters, digits, and _ - . space / only."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


def log_to_mlflow(record: RunRecord, artifacts: Sequence[str | Path], *, uri: str | None = None) -> str:
    """Log `record` as one MLflow run of the experiment "bastion"; returns the MLflow run id.

    Args:
        record: The run (its metrics become MLflow metrics, its identity and settings parameters).
        artifacts: Files to attach (report.json, report.html, ...); missing ones are skipped.
        uri: Tracking URI or local folder; None is the local `mlruns/` folder.

    Raises:
        InputError: If mlflow is not installed or the tracking store refuses the run.
    """
    check_mlflow()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    target = tracking_uri(uri)
    if target.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the folder store behind this
    try:
        client = MlflowClient(tracking_uri=target)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        tags = {"bastion.kind": record.kind, "bastion.model": record.model, "bastion.threat": record.threat}
        if record.git_commit:
            tags["mlflow.source.git.commit"] = record.git_commit
        run = client.create_run(experiment_id, run_name=record.run_id, tags=tags)
        run_id = run.info.run_id
        stamp = int(time.time() * 1000)
        metrics = [Metric(_metric_name(k), v, stamp, 0) for k, v in record.metrics.items() if math.isfinite(v)]
        client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in _params(record).items()],
                         tags=[RunTag("bastion.gate", record.gate)] if record.gate else [])
        for path in artifacts:
            if Path(path).is_file():
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
    except MlflowException as error:
        raise InputError(f"MLflow logging to {target} failed: {str(error).splitlines()[0]}") from None
    return str(run_id)
