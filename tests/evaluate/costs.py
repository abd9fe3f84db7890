"""What every report's tables keep: a stage's attack rows add up to the stage; no row spends passes in 0 s."""

from __future__ import annotations

from typing import Any

from bastion.evaluate.report_schema import attack_rows
from bastion.passes import PassCount

#: Seconds a stage may spend outside its rows without an overhead row: the runner's own bookkeeping.
SLACK = 0.5  # as `bastion.evaluate.stages.costs`: seconds alone below it get no overhead row


def assert_rows_add_up(report: dict[str, Any]) -> None:
    """Each stage's rows in `attacks` sum to the stage's passes (exactly) and seconds; none spends passes in 0 s."""
    stages = {s["name"]: s for s in report["stages"]}
    for row in attack_rows(report):
        assert row["stage"] in stages, row
        spent = row["passes"]["forward_samples"] + row["passes"]["backward_samples"]
        assert row["seconds"] > 0 or spent == 0, f"{row['name']} ({row['role']}) spent {spent} passes in 0 s"
    for name, stage in stages.items():
        rows = [r for r in attack_rows(report) if r["stage"] == name]
        if not rows:
            continue
        assert sum((PassCount(**r["passes"]) for r in rows), PassCount()) == PassCount(**stage["passes"]), name
        seconds = sum(r["seconds"] for r in rows)
        assert seconds <= stage["seconds"] + 1e-6 and stage["seconds"] - seconds < SLACK, (name, seconds, stage)
