"""One run of the history: what identifies it, its headline metrics, and the whole JSON result.

The three kinds of run write different JSON (`report.json` of `bastion evaluate`, `certify.json` of
`bastion certify`, `model_card.json` of `bastion train`); `from_result` reads each into the same
flat record. Missing keys are skipped, never an error: reports gain sections over time.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from bastion.errors import InputError
from bastion.evaluate.report_schema import attack_rows, class_rows, stage_result

__all__ = ["KINDS", "RunRecord", "certified_key", "from_result", "per_class_robust"]

KINDS = ("evaluate", "certify", "train")


@dataclass(frozen=True)
class RunRecord:
    """A run as the history stores it.

    Attributes:
        run_id: Unique id (the report's own `run_id` for evaluations).
        created_at: ISO 8601 time, UTC.
        kind: "evaluate", "certify" or "train".
        model: The name runs are grouped and gated by: `--model-name`, else the model spec.
        threat: The threat model runs are compared under, e.g. "linf eps=0.3" or "l2 sigma=0.25".
        metrics: Headline numbers, e.g. clean_accuracy, robust_accuracy, certified_accuracy@0.5.
        result: The whole JSON result of the run.
        gate: "pass" or "fail" when the run was gated against a baseline, else None.
    """

    run_id: str
    created_at: str
    kind: str
    model: str
    threat: str
    metrics: dict[str, float]
    result: dict[str, Any]
    model_spec: str | None = None
    model_fingerprint: str | None = None
    data: str | None = None
    data_fingerprint: str | None = None
    norm: str | None = None
    eps: float | None = None
    out_dir: str | None = None
    report_path: str | None = None
    git_commit: str | None = None
    command: str | None = None
    gate: str | None = None
    seq: int | None = field(default=None, compare=False)

    def with_(self, **changes: Any) -> RunRecord:
        """A copy with some fields changed."""
        return replace(self, **changes)


def certified_key(radius: float) -> str:
    """The metric name of certified accuracy at `radius`: "certified_accuracy@0.5"."""
    return f"certified_accuracy@{radius:g}"


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _put(metrics: dict[str, float], key: str, value: Any) -> None:
    number = _number(value)
    if number is not None:
        metrics[key] = number


def _certified(metrics: dict[str, float], table: Any) -> None:
    for point in table if isinstance(table, list) else []:
        radius = _number(_get(point, "radius"))
        if radius is not None:
            _put(metrics, certified_key(radius), _get(point, "accuracy"))


def per_class_robust(result: dict[str, Any]) -> dict[str, float]:
    """Robust accuracy per class name of an evaluation report (classes without points left out)."""
    values: dict[str, float] = {}
    for row in class_rows(result):
        value = _number(_get(row, "robust_accuracy"))
        if value is not None and _get(row, "n") != 0:
            values[str(row.get("name", row.get("label")))] = value
    return values


def _evaluate_fields(result: dict[str, Any]) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    _put(metrics, "clean_accuracy", _get(result, "summary", "clean_accuracy"))
    _put(metrics, "robust_accuracy", _get(result, "summary", "robust_accuracy"))
    _put(metrics, "top5_accuracy", _get(result, "clean", "top5"))
    for attack in attack_rows(result):
        if attack.get("name"):
            _put(metrics, f"after/{attack['name']}", attack.get("robust_accuracy"))
    classes = per_class_robust(result)
    if classes:
        metrics["min_class_robust_accuracy"] = min(classes.values())
    _certified(metrics, _get(stage_result(result, "certify"), "summary", "certified_accuracy"))
    norm, eps = _get(result, "summary", "norm"), _number(_get(result, "summary", "eps"))
    spec, fingerprint = _evaluated_identity(result)
    return {"metrics": metrics, "norm": norm, "eps": eps,
            "threat": f"{norm} eps={eps:.6g}" if norm and eps is not None else "unknown",
            "model_spec": spec, "model_fingerprint": fingerprint,
            "data": _get(result, "provenance", "data", "spec") or _get(result, "summary", "data"),
            "data_fingerprint": _get(result, "provenance", "data", "fingerprint"),
            "command": _get(result, "provenance", "command")}


def _evaluated_identity(result: dict[str, Any]) -> tuple[str | None, str | None]:
    """The spec and fingerprint of what was evaluated: the model, or ensemble, with its defenses in order.

    A defended run (`--defense jpeg:quality=75`) is another system than the bare model: its spec
    reads "zoo:mnist-cnn + jpeg:quality=75" and its fingerprint mixes the defenses (and ensemble
    members) into the weights' fingerprint, so baselines and comparisons never pair the two.
    """
    spec = _get(result, "provenance", "model", "spec") or _get(result, "summary", "model")
    fingerprint = _get(result, "provenance", "model", "fingerprint")
    config: dict[str, Any] = result["config"] if isinstance(result.get("config"), dict) else {}
    defenses = [str(d) for d in config.get("defense") or []]
    members = [str(m) for m in config.get("ensemble") or []]
    if members and not _get(result, "provenance", "model", "spec"):
        spec = f"ensemble[{config.get('ensemble_mode') or 'logits'}]({', '.join(members)})"
    if defenses and spec is not None:
        suffix = " + " + " + ".join(defenses)
        spec = str(spec) if str(spec).endswith(suffix) else f"{spec}{suffix}"
    if (defenses or members) and fingerprint is not None:
        mixed = json.dumps({"weights": fingerprint, "defense": defenses, "ensemble": members,
                            "mode": config.get("ensemble_mode") if members else None}, sort_keys=True)
        fingerprint = hashlib.sha256(mixed.encode()).hexdigest()[:16]
    return (str(spec) if spec else None), (str(fingerprint) if fingerprint else None)


def _certify_fields(result: dict[str, Any]) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    _put(metrics, "smoothed_accuracy", _get(result, "summary", "accuracy"))
    _put(metrics, "abstain_rate", _get(result, "summary", "abstain_rate"))
    _certified(metrics, _get(result, "summary", "certified_accuracy"))
    sigma = _number(_get(result, "settings", "sigma"))
    return {"metrics": metrics, "norm": "l2", "eps": None,
            "threat": f"l2 sigma={sigma:.6g}" if sigma is not None else "l2",
            "model_spec": _get(result, "provenance", "model", "spec"),
            "model_fingerprint": _get(result, "provenance", "model", "fingerprint"),
            "data": _get(result, "provenance", "data", "spec"),
            "data_fingerprint": _get(result, "provenance", "data", "fingerprint"),
            "command": _get(result, "provenance", "command")}


def _train_fields(result: dict[str, Any]) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    _put(metrics, "clean_accuracy", _get(result, "metrics", "clean_accuracy"))
    _put(metrics, "robust_accuracy", _get(result, "metrics", "pgd_accuracy"))
    threat = _get(result, "hyperparameters", "threat")
    norm, _, eps_text = str(threat).partition(" eps=") if threat else ("", "", "")
    try:
        eps: float | None = float(eps_text)
    except ValueError:
        eps = None
    return {"metrics": metrics, "norm": norm or None, "eps": eps, "threat": str(threat) if threat else "none",
            "model_spec": _get(result, "model", "spec"),
            "model_fingerprint": _get(result, "model", "fingerprint"),
            "data": _get(result, "data", "name"), "data_fingerprint": _get(result, "data", "fingerprint"),
            "command": result.get("command")}


def _with_defenses(name: str, spec: Any) -> str:
    """A --model-name keeps the defenses the run was evaluated with: "net" + " + jpeg:quality=75"."""
    _, plus, defenses = str(spec or "").partition(" + ")
    return f"{name} + {defenses}" if plus and not name.endswith(f" + {defenses}") else name


def _new_id(created: datetime, seed: str) -> str:
    digest = hashlib.sha1(f"{seed}{secrets.token_hex(8)}".encode()).hexdigest()[:6]
    return f"{created:%Y%m%d-%H%M%S}-{digest}"


def from_result(kind: str, result: dict[str, Any], *, model_name: str | None = None, out_dir: str | None = None,
                report_path: str | None = None, git_commit: str | None = None) -> RunRecord:
    """Read a run's JSON result (report.json, certify.json or model_card.json) into a record.

    Args:
        kind: "evaluate", "certify" or "train".
        result: The JSON result as a dictionary.
        model_name: The name to group and gate the run by; None takes the model spec.
        out_dir: The run's output folder.
        report_path: The run's HTML report, linked from the dashboard.
        git_commit: Commit of the user's repository.

    Raises:
        InputError: If `kind` is not one of `KINDS`.
    """
    readers = {"evaluate": _evaluate_fields, "certify": _certify_fields, "train": _train_fields}
    if kind not in readers:
        raise InputError(f"unknown run kind {kind!r}; choose one of: {', '.join(KINDS)}")
    fields = readers[kind](result)
    created_text = result.get("created_at")
    try:
        created = datetime.fromisoformat(str(created_text)) if created_text else datetime.now(timezone.utc)
    except ValueError:
        created = datetime.now(timezone.utc)
    run_id = result.get("run_id") if kind == "evaluate" and isinstance(result.get("run_id"), str) else None
    spec = fields.pop("model_spec")
    return RunRecord(
        run_id=run_id or _new_id(created, f"{kind}{spec}{fields['data_fingerprint']}"),
        created_at=created.isoformat(timespec="seconds"),
        kind=kind,
        model=_with_defenses(model_name, spec) if model_name else (str(spec) if spec else "unnamed"),
        result=result,
        model_spec=str(spec) if spec else None,
        out_dir=out_dir,
        report_path=report_path,
        git_commit=git_commit,
        **fields,
    )
