"""Run history for CI/CD: a SQLite store of every run, a regression gate against a baseline, a static dashboard.

`bastion evaluate`, `certify` and `train` record each run (`--db`, default `bastion.db` beside the
run's folder); `--baseline last|best|RUN_ID --max-drop 0.02` fails a run (exit 1) whose metrics
dropped; `bastion history`, `bastion compare` and `bastion dashboard` read the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.history.gate import GateReport, GateRow, Thresholds, compare_runs, read_gate_table
    from bastion.history.git import git_commit
    from bastion.history.record import RunRecord, from_result, per_class_robust
    from bastion.history.store import SCHEMA_VERSION, RunStore

__all__ = [
    "SCHEMA_VERSION",
    "GateReport",
    "GateRow",
    "RunRecord",
    "RunStore",
    "Thresholds",
    "compare_runs",
    "from_result",
    "git_commit",
    "per_class_robust",
    "read_gate_table",
]

_HOMES = {
    "GateReport": "bastion.history.gate",
    "GateRow": "bastion.history.gate",
    "RunRecord": "bastion.history.record",
    "RunStore": "bastion.history.store",
    "SCHEMA_VERSION": "bastion.history.store",
    "Thresholds": "bastion.history.gate",
    "compare_runs": "bastion.history.gate",
    "from_result": "bastion.history.record",
    "git_commit": "bastion.history.git",
    "per_class_robust": "bastion.history.record",
    "read_gate_table": "bastion.history.gate",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
