"""The regression gate: a run against its baseline, metric by metric, with the allowed drop of each.

A metric regresses when `baseline - current > allowed` (accuracies are fractions in [0, 1], so a
`max_drop` of 0.02 is two percentage points); the per-class floor is absolute: every class's robust
accuracy must stay at or above it. Thresholds come from `--max-drop` and the TOML config's
`[gate]` table:

    [gate]
    baseline = "last"       # last | best | RUN_ID
    max_drop = 0.02         # default allowed drop of every metric
    clean = 0.01            # allowed drop of clean accuracy
    robust = 0.02           # allowed drop of robust accuracy
    class_floor = 0.5       # every class's robust accuracy must stay >= this
    certified_radius = 0.5  # compare certified accuracy at this radius only
    certified = 0.02        # allowed drop of certified accuracy
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bastion.errors import InputError
from bastion.history.record import RunRecord, certified_key, per_class_robust
from bastion.tomlfile import read_toml_document

__all__ = ["GateReport", "GateRow", "Thresholds", "compare_runs", "read_gate_table"]

_EPSILON = 1e-9  # float noise: a drop of exactly max_drop passes


@dataclass(frozen=True)
class Thresholds:
    """The allowed drops (fractions) and floors of the gate; None falls back to `max_drop`."""

    max_drop: float = 0.02
    clean: float | None = None
    robust: float | None = None
    class_floor: float | None = None
    certified_radius: float | None = None
    certified: float | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"gate threshold {item.name} must be a number, got {value!r}")
            low, high = (0.0, math.inf) if item.name == "certified_radius" else (0.0, 1.0)
            if not low <= value <= high:
                raise InputError(f"gate threshold {item.name} must lie in [{low:g}, {high:g}], got {value}")

    @classmethod
    def from_table(cls, table: dict[str, Any], *, max_drop: float | None = None) -> Thresholds:
        """From a `[gate]` table (its `baseline` key is ignored here); `max_drop` (the flag) wins over the table's."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known - {"baseline"})
        if unknown:
            raise InputError(f"unknown [gate] key(s) {', '.join(unknown)}; valid: baseline, {', '.join(sorted(known))}")
        values = {k: v for k, v in table.items() if k in known}
        if max_drop is not None:
            values["max_drop"] = max_drop
        return cls(**values)


@dataclass(frozen=True)
class GateRow:
    """One check: a metric's baseline and current value, its drop and what is allowed."""

    metric: str
    baseline: float | None
    current: float | None
    allowed: float
    floor: bool = False

    @property
    def drop(self) -> float | None:
        """Baseline minus current (positive: worse); None for a floor or a missing value."""
        if self.floor or self.baseline is None or self.current is None:
            return None
        return self.baseline - self.current

    @property
    def passed(self) -> bool:
        """Whether the check holds (a metric missing from the current run fails)."""
        if self.current is None:
            return False
        if self.floor:
            return self.current >= self.allowed - _EPSILON
        drop = self.drop
        return drop is None or drop <= self.allowed + _EPSILON


@dataclass(frozen=True)
class GateReport:
    """The outcome of the gate: every check, and the runs compared."""

    baseline_id: str
    current_id: str
    model: str
    threat: str
    rows: list[GateRow]
    notes: list[str]

    @property
    def passed(self) -> bool:
        """Whether no metric regressed."""
        return all(row.passed for row in self.rows)

    @property
    def regressions(self) -> list[GateRow]:
        """The checks that failed."""
        return [row for row in self.rows if not row.passed]

    def format(self) -> str:
        """The terminal table, then one line naming what regressed (or that the gate passed)."""
        header = ("metric", "baseline", "current", "drop", "allowed", "status")
        body = [(row.metric, _pct(row.baseline), _pct(row.current),
                 "" if row.drop is None else f"{row.drop:+.4f}",
                 f">= {row.allowed:.4f}" if row.floor else f"{row.allowed:.4f}",
                 "ok" if row.passed else ("MISSING" if row.current is None else "REGRESSED")) for row in self.rows]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = [f"gate: {self.model} at {self.threat}: run {self.current_id} against baseline {self.baseline_id}"]
        lines += [f"  note: {note}" for note in self.notes]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                  for line in [header, tuple("-" * w for w in widths), *body]]
        failed = self.regressions
        if failed:
            lines.append("gate FAILED: " + "; ".join(_describe(row) for row in failed))
        else:
            lines.append(f"gate passed ({len(self.rows)} checks)")
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _describe(row: GateRow) -> str:
    if row.current is None:
        return f"{row.metric} missing from the current run"
    if row.floor:
        return f"{row.metric} {row.current:.2%} is under the floor {row.allowed:.2%}"
    return f"{row.metric} dropped by {row.drop:.4f} (allowed {row.allowed:.4f})"


def compare_runs(baseline: RunRecord, current: RunRecord, thresholds: Thresholds | None = None) -> GateReport:
    """Check `current` against `baseline`.

    Checks clean and robust accuracy (when the baseline has them), certified accuracy at
    `certified_radius` (or at every radius both runs share) and, with `class_floor`, each class's
    robust accuracy.
    """
    limits = thresholds or Thresholds()
    base, now = baseline.metrics, current.metrics
    rows: list[GateRow] = []
    for metric, allowed in (("clean_accuracy", limits.clean), ("robust_accuracy", limits.robust),
                            ("smoothed_accuracy", limits.clean)):
        if metric in base:
            rows.append(GateRow(metric, base[metric], now.get(metric), _or(allowed, limits.max_drop)))
    if limits.certified_radius is not None:
        key = certified_key(limits.certified_radius)
        rows.append(GateRow(key, base.get(key), now.get(key), _or(limits.certified, limits.max_drop)))
    else:
        shared = [k for k in base if k.startswith("certified_accuracy@") and k in now]
        rows += [GateRow(k, base[k], now[k], _or(limits.certified, limits.max_drop)) for k in shared]
    if limits.class_floor is not None:
        before, after = per_class_robust(baseline.result), per_class_robust(current.result)
        if not after:
            rows.append(GateRow("class robust accuracy", None, None, limits.class_floor, floor=True))
        for name, value in after.items():
            rows.append(GateRow(f"class {name} robust accuracy", before.get(name), value, limits.class_floor,
                                floor=True))
    notes = []
    if baseline.data_fingerprint != current.data_fingerprint:
        notes.append(f"the data differ (fingerprints {baseline.data_fingerprint} and {current.data_fingerprint})")
    if baseline.model != current.model:
        notes.append(f"the baseline is a run of {baseline.model}")
    return GateReport(baseline.run_id, current.run_id, current.model, current.threat, rows, notes)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def read_gate_table(path: str | Path | None) -> dict[str, Any]:
    """The `[gate]` table of a TOML config (top level or inside `[evaluate]`); empty without one."""
    if path is None:
        return {}
    document = read_toml_document(path)
    nested = document.get("evaluate")
    table = document.get("gate", nested.get("gate", {}) if isinstance(nested, dict) else {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: [gate] must be a table")
    return dict(table)
