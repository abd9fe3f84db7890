"""The versions of report.json, and the one way to read any of them: as schema 3, its stages holding every result.

- Schema 1 kept each feature under a key of its own (`min_norm`, `certify`, `ensemble`, `extended`,
  `detection`, `curve_settings`) beside the top-level `attacks`, `curve`, `per_class` and `class_floor`.
- Schema 2 added `stages`: every stage in run order with its settings, cost and result. Six results
  were free-form sections (`{"section": {...}}`), and `attacks`, `curve` and `per_class` stayed at
  the top level as copies of what the stages held.
- Schema 3 keeps each thing once: the stages, every result typed (a section's content is the
  result itself), and no top-level copies. The attack table, the curve and the per-class rows are
  read off the stages (`attack_rows`, `curve_rows`, `class_rows`).

`upgrade` turns a report of any version into schema 3's shape; every reader (the HTML and terminal
reports, the history store, `EvalResult.from_dict`) reads through it, so reports and history
databases written by earlier versions keep working.
"""

from __future__ import annotations

from typing import Any

from bastion.errors import InputError

__all__ = ["READABLE", "SCHEMA_VERSION", "attack_rows", "class_floor", "class_rows", "curve_rows",
           "legacy_stages", "stage_records", "stage_result", "upgrade"]

SCHEMA_VERSION = 3
READABLE = (1, 2, 3)

#: Schema 1's per-feature keys, and the kind of the stage that holds each since schema 2.
_LEGACY_KEYS = {"curve_settings": "curve", "min_norm": "min-norm", "certify": "certify", "ensemble": "members",
                "extended": "extended", "detection": "detection"}
#: The top-level copies schema 3 dropped.
_COPIES = ("attacks", "curve", "per_class", "class_floor")
#: The stage kinds whose results hold rows of the attack table, and the key they hold them under.
_ATTACK_ROWS = {"attack": "record", "escalation": "records", "audit": "records"}


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
        return report
    stages = [dict(s) for s in _list(report.get("stages"))]
    if not stages:
        stages = legacy_stages(report)
    for stage in stages:  # schema 2's free-form sections: the section is the result now
        result = stage.get("result")
        if isinstance(result, dict) and set(result) == {"section"}:
            stage["result"] = _dict(result["section"])
    kept = {k: v for k, v in report.items() if k not in _COPIES and k not in _LEGACY_KEYS}
    return {**kept, "schema_version": SCHEMA_VERSION, "stages": stages}


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


def attack_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The attack table: every attack record of every stage, in run order.

    The first attack, when it is FGSM, saw every correct point: its robust accuracy is its own,
    so its standalone accuracy is set to it.
    """
    rows: list[dict[str, Any]] = []
    for stage in stage_records(report):
        key, result = _ATTACK_ROWS.get(str(stage.get("kind"))), _dict(stage.get("result"))
        if key == "record" and isinstance(result.get("record"), dict):
            rows.append(result["record"])
        elif key == "records":
            rows += _list(result.get("records"))
    if rows and rows[0].get("name") == "fgsm":
        rows[0] = {**rows[0], "standalone_accuracy": rows[0].get("robust_accuracy")}
    return rows


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
