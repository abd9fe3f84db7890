"""The versions of report.json, and the one way to read any of them: as schema 3, its stages holding every result.

- Schema 1 kept each feature under a key of its own (`min_norm`, `certify`, `ensemble`, `extended`,
  `detection`, `curve_settings`) beside the top-level `attacks`, `curve`, `per_class` and `class_floor`.
- Schema 2 added `stages`: every stage in run order with its settings, cost and result. Six results
  were free-form sections (`{"section": {...}}`), and `attacks`, `curve` and `per_class` stayed at
  the top level as copies of what the stages held.
- Schema 3 keeps each thing once: the stages, every result typed (a section's content is the
  result itself), and no top-level copies. The attack table, the curve and the per-class rows are
  read off the stages (`attack_rows`, `curve_rows`, `class_rows`).

Attack records gained their `kind` (`AttackKind`) within schema 3: `upgrade` gives the records of
a report written before it the kind their role names, the one place a role string is read.

`upgrade` turns a report of any version into schema 3's shape; every reader (the HTML and terminal
reports, the history store, `EvalResult.from_dict`) reads through it, so reports and history
databases written by earlier versions keep working. The attack table is read through the stages'
typed results (`StageResult.attack_records`), never through role strings or attack names.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from bastion.errors import InputError
from bastion.evaluate.records import AttackKind, AttackRecord
from bastion.evaluate.stage import STAGES, Stage, StageResult, json_ready

__all__ = ["READABLE", "SCHEMA_VERSION", "attack_rows", "attack_table", "class_floor", "class_rows", "curve_rows",
           "kind_of_role", "legacy_stages", "stage_records", "stage_result", "upgrade"]

SCHEMA_VERSION = 3
READABLE = (1, 2, 3)

#: Schema 1's per-feature keys, and the kind of the stage that holds each since schema 2.
_LEGACY_KEYS = {"curve_settings": "curve", "min_norm": "min-norm", "certify": "certify", "ensemble": "members",
                "extended": "extended", "detection": "detection"}
#: The top-level copies schema 3 dropped.
_COPIES = ("attacks", "curve", "per_class", "class_floor")
#: Where the reports written before attack records had a kind hold them: stage kind -> key of a record or a list.
_UNKINDED = {"attack": "record", "escalation": "records", "audit": "records"}
#: The kind of such a record, by the start of its role (the first that matches); none matching: `ATTACK`.
_ROLE_KINDS = (("escalation", AttackKind.ESCALATION), ("masking check", AttackKind.MASKING_CHECK),
               ("overhead", AttackKind.OVERHEAD), ("audit escalation", AttackKind.AUDIT_ESCALATION),
               ("audit", AttackKind.AUDIT), ("autoattack", AttackKind.AUTOATTACK), ("sanity", AttackKind.SANITY),
               ("main", AttackKind.MAIN), ("gradient-free", AttackKind.MAIN), ("transfer", AttackKind.TRANSFER),
               ("label-only", AttackKind.QUERY))
_STANDARD = {kind.value for kind in AttackKind if kind.standard}


def _record(name: str, kind: str, result: dict[str, Any], seconds: float = 0.0) -> dict[str, Any]:
    return {"name": name, "kind": kind, "settings": {}, "seconds": seconds, "passes": {}, "passes_per_point": {},
            "headline": "", "result": result}


def legacy_stages(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage records of a schema-1 report, rebuilt from its per-feature and top-level keys (as far as they go)."""
    stages = []
    for row in _list(report.get("attacks")):
        stages.append(_record(str(row.get("name", "attack")), "attack", {"record": row, "broken": []},
                              float(row.get("seconds", 0.0) or 0.0)))
    if report.get("curve") or report.get("curve_settings"):
        stages.append(_record("curve", "curve", {"points": _list(report.get("curve")),
                                                 "settings": _dict(report.get("curve_settings"))}))
    if report.get("per_class"):
        stages.append(_record("per-class", "per-class", {"classes": _list(report.get("per_class")),
                                                         "floor": report.get("class_floor", 0.0)}))
    for key, kind in _LEGACY_KEYS.items():
        value = report.get(key)
        if kind != "curve" and isinstance(value, dict) and value:
            stages.append(_record(kind, kind, value, float(value.get("seconds", 0.0) or 0.0)))
    return stages


def upgrade(report: dict[str, Any]) -> dict[str, Any]:
    """The report in schema 3's shape (a new dict; the one given is not changed).

    Raises:
        InputError: If the report's `schema_version` is none this version reads.
    """
    version = report.get("schema_version", 1)
    if version not in READABLE:
        raise InputError(f"report schema_version {version!r} is not supported "
                         f"(this bastion reads {', '.join(map(str, READABLE))})")
    if version == SCHEMA_VERSION:
        if all("kind" in row for stage in _list(report.get("stages")) for row in _unkinded(stage)):
            return report
        return {**report, "stages": [_with_kinds(s) for s in _list(report.get("stages"))]}
    stages = [dict(s) for s in _list(report.get("stages"))]
    if not stages:
        stages = legacy_stages(report)
    for stage in stages:  # schema 2's free-form sections: the section is the result now
        result = stage.get("result")
        if isinstance(result, dict) and set(result) == {"section"}:
            stage["result"] = _dict(result["section"])
    kept = {k: v for k, v in report.items() if k not in _COPIES and k not in _LEGACY_KEYS}
    return {**kept, "schema_version": SCHEMA_VERSION, "stages": [_with_kinds(s) for s in stages]}


def kind_of_role(role: str) -> AttackKind:
    """The kind of an attack record written before records had one, read off its role."""
    return next((kind for start, kind in _ROLE_KINDS if role.startswith(start)), AttackKind.ATTACK)


def _unkinded(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """The attack records of a stage laid out as before records had a kind."""
    key, result = _UNKINDED.get(str(stage.get("kind"))), _dict(stage.get("result"))
    return [] if key is None else _list([result.get(key)] if key == "record" else result.get(key))


def _with_kinds(stage: dict[str, Any]) -> dict[str, Any]:
    """The stage with a kind on each of its attack records (a new dict when any lacked one)."""
    if all("kind" in row for row in _unkinded(stage)):
        return stage
    kinded = [row if "kind" in row else {**row, "kind": kind_of_role(str(row.get("role", ""))).value}
              for row in _unkinded(stage)]
    result, key = _dict(stage.get("result")), _UNKINDED[str(stage.get("kind"))]
    return {**stage, "result": {**result, key: kinded[0] if key == "record" else kinded}}


def stage_records(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's stages in run order, whatever its version (those a schema-1 report's keys describe)."""
    try:
        return [s for s in _list(upgrade(report).get("stages"))]
    except InputError:
        return []  # read leniently: a report of an unknown version shows no stages


def stage_result(report: dict[str, Any], kind: str) -> dict[str, Any]:
    """The result of the report's first stage of `kind` (empty when none ran)."""
    results = (s.get("result") for s in stage_records(report) if s.get("kind") == kind)
    return next((r for r in results if isinstance(r, dict)), {})


def attack_table(results: Iterable[StageResult]) -> list[AttackRecord]:
    """The attack table: the attack records of every stage result (`StageResult.attack_records`), in run order.

    The first row, when it is a standard attack (`AttackKind.standard`), attacked every correctly
    classified point: its robust accuracy is its own, so its standalone accuracy is set to it.
    """
    rows = [record for result in results for record in result.attack_records()]
    if rows and rows[0].kind.standard:
        rows[0] = replace(rows[0], standalone_accuracy=rows[0].robust_accuracy)
    return rows


def attack_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The attack table of a report dictionary of any version, as JSON values (as `attack_table` reads it).

    Each stage's records are read through its registered kind's typed result; the records of a
    report this version cannot type (an early report's partial rows) are shown as they lie.
    """
    rows = [row for stage in stage_records(report) for row in _rows(stage)]
    if rows and rows[0].get("kind") in _STANDARD:
        rows[0] = {**rows[0], "standalone_accuracy": rows[0].get("robust_accuracy")}
    return rows


def _rows(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """A stage's attack records as JSON values, read through its typed result (`StageResult.attack_records`)."""
    kind = str(stage.get("kind", ""))
    cls = typing.cast("type[Stage]", STAGES.get(kind)).Result if kind in STAGES else None
    if cls is None or cls.attack_records is StageResult.attack_records:
        return []  # no attack records: its result is not parsed
    try:
        return [json_ready(record) for record in cls.from_dict(_dict(stage.get("result"))).attack_records()]
    except (TypeError, KeyError, ValueError, InputError):
        return _unkinded(stage)


def curve_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The accuracy-vs-eps curve's points (empty when no curve ran)."""
    return _list(stage_result(report, "curve").get("points"))


def class_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-class rows (empty when the per-class stage did not run)."""
    return _list(stage_result(report, "per-class").get("classes"))


def class_floor(report: dict[str, Any]) -> float:
    """The per-class floor (0 when the per-class stage did not run)."""
    value = stage_result(report, "per-class").get("floor", 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
