"""The run-history options of `evaluate`, `certify` and `train`, and the hook that records (and gates) a run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import InputError

if TYPE_CHECKING:
    from bastion.history.gate import Thresholds

__all__ = ["HISTORY_KEYS", "HistoryPlan", "add_history_options", "prepare_history"]

HISTORY_KEYS = frozenset({"db", "no_db", "model_name", "baseline", "max_drop", "mlflow", "mlflow_uri"})
DB_NAME = "bastion.db"


def add_history_options(parser: argparse.ArgumentParser) -> None:
    """--db, --no-db, --model-name, --baseline, --max-drop, --mlflow, --mlflow-uri."""
    group = parser.add_argument_group("run history and regression gate")
    group.add_argument("--db", help=f"SQLite run history to record the run in (default: {DB_NAME} in the parent "
                       "folder of --out)")
    group.add_argument("--no-db", action="store_true", default=None, help="do not record the run")
    group.add_argument("--model-name", help="name the history groups and gates runs by (default: the --model spec); "
                       "give every checkpoint of one model the same name")
    group.add_argument("--baseline", help="compare with a recorded run of the same model name and threat model: "
                       "last (the latest that passed), best (highest robust accuracy) or a run id; exit 1 on a "
                       "regression (thresholds: --max-drop and the config's [gate] table)")
    group.add_argument("--max-drop", type=float, help="largest allowed drop of each metric, as a fraction "
                       "(0.02 = 2 points; default 0.02; implies --baseline last)")
    group.add_argument("--mlflow", action="store_true", default=None, help="also log the run to MLflow "
                       "(pip install 'bastion[mlflow]')")
    group.add_argument("--mlflow-uri", help="MLflow tracking URI or folder (default: mlruns/ here)")


@dataclass(frozen=True)
class HistoryPlan:
    """What to do with a finished run: where to record it, what to gate it against, whether to log to MLflow."""

    db: Path | None
    model_name: str | None
    baseline: str | None
    thresholds: Thresholds
    mlflow_uri: str | None
    mlflow: bool

    def record(self, kind: str, result: dict[str, Any], *, out: str | Path, report: str | Path | None = None,
               artifacts: Sequence[str | Path] = ()) -> int:
        """Record the run, gate it, log it to MLflow; returns the exit code (1 when the gate fails)."""
        from bastion.history import RunStore, compare_runs, from_result, git_commit
        from bastion.history.record import certified_key

        record = from_result(kind, result, model_name=self.model_name, out_dir=str(Path(out).resolve()),
                             report_path=str(Path(report).resolve()) if report else None, git_commit=git_commit())
        gate_report = None
        if self.db is not None:
            store = RunStore(self.db)
            if self.baseline is not None:
                radius = self.thresholds.certified_radius
                score_key = certified_key(radius) if kind == "certify" and radius is not None else (
                    "smoothed_accuracy" if kind == "certify" else "robust_accuracy")
                empty = self.baseline in ("last", "best") and not self.db.is_file()
                base = None if empty else store.baseline(
                    self.baseline, model=record.model, kind=kind, threat=record.threat, exclude=record.run_id,
                    key=lambda r: r.metrics.get(score_key, float("-inf")))
                if base is None:
                    print(f"gate: no earlier {kind} run of {record.model} at {record.threat} in {self.db}: "
                          "nothing to compare with (passed)")
                else:
                    gate_report = compare_runs(base, record, self.thresholds)
                    record = record.with_(gate="pass" if gate_report.passed else "fail")
            run_id = store.record(record)
            record = record.with_(run_id=run_id)
            if gate_report is not None:
                gate_report = replace(gate_report, current_id=run_id)
            print(f"history: recorded {kind} run {run_id} in {self.db}")
        if self.mlflow:
            from bastion.history.mlflow_log import log_to_mlflow, tracking_uri

            mlflow_id = log_to_mlflow(record, [*artifacts, *([report] if report else [])], uri=self.mlflow_uri)
            print(f"mlflow: logged run {mlflow_id} to {tracking_uri(self.mlflow_uri)}")
        if gate_report is None:
            return 0
        print(gate_report.format())
        sys.stdout.flush()
        return 0 if gate_report.passed else 1


def prepare_history(args: argparse.Namespace, *, out: str | Path, config: str | Path | None = None) -> HistoryPlan:
    """Check the history options before the run starts (a bad option fails in a second, not after an hour).

    Args:
        args: The parsed command line (with the options of `add_history_options`).
        out: The run's output folder; the default database is `bastion.db` in its parent.
        config: A TOML config whose `[gate]` table sets the thresholds (and may set `baseline`).
    """
    from bastion.history.gate import Thresholds, read_gate_table

    table = read_gate_table(config)
    baseline = args.baseline or table.get("baseline")
    if baseline is None and (args.max_drop is not None or table):
        baseline = "last"
    if baseline is not None and (not isinstance(baseline, str) or not baseline.strip()):
        raise InputError(f"--baseline takes last, best or a run id, got {baseline!r}")
    thresholds = Thresholds.from_table(table, max_drop=args.max_drop)
    if args.no_db:
        if args.db is not None:
            raise InputError("--db and --no-db contradict each other")
        if baseline is not None:
            raise InputError("a --baseline (or a [gate] table) needs the run history: drop --no-db")
    db = None if args.no_db else Path(args.db) if args.db else Path(out).parent / DB_NAME
    if db is not None and db.exists() and not db.is_file():
        raise InputError(f"--db {db} is not a file")
    if db is not None:
        from bastion.history import RunStore

        RunStore(db).check()  # another program's file, or no database at all, fails now, not after the run
    if db is not None and baseline not in (None, "last", "best"):
        from bastion.history import RunStore

        RunStore(db).get(str(baseline))  # a wrong run id fails now, not after the evaluation
    if args.mlflow:
        from bastion.history.mlflow_log import check_mlflow

        check_mlflow()
    elif args.mlflow_uri is not None:
        raise InputError("--mlflow-uri needs --mlflow")
    return HistoryPlan(db=db, model_name=args.model_name, baseline=baseline, thresholds=thresholds,
                       mlflow_uri=args.mlflow_uri, mlflow=bool(args.mlflow))
