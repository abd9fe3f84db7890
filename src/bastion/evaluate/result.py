"""Typed results of an evaluation and their JSON form (`report.json`, versioned by `schema_version`).

The stable top-level keys, for scripts and CI: `schema_version`, `summary`, `attacks`, `curve`,
`per_class`, `warnings`, `provenance` and `verdict` (the gradient-masking verdict, its findings and
the robust accuracy before and after escalation). The JSON is the source of truth; the HTML and the
terminal table are rendered from it.

Schema 2 adds `stages`: every stage in run order with its settings, seconds, passes (in total and
per point) and its own result. What schema 1 kept in keys of its own (`min_norm`, `certify`,
`ensemble`, `extended`, `detection`, `curve_settings`) is now the result of the stage that made it
(kinds `min-norm`, `certify`, `members`, `extended`, `detection`, `curve`). `from_dict` reads both
versions: a schema-1 report gets its stages rebuilt from those keys (`legacy_stages`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bastion._io import write_atomic
from bastion.errors import InputError

__all__ = [
    "SCHEMA_VERSION",
    "AttackRecord",
    "StageRecord",
    "legacy_stages",
    "passes_per_point",
    "stage_records",
    "stage_result",
    "ClassRecord",
    "CleanRecord",
    "CurvePoint",
    "EvalResult",
    "Finding",
    "GalleryItem",
    "Summary",
    "Verdict",
    "write_atomic",
]

SCHEMA_VERSION = 2
_READABLE = (1, 2)


@dataclass(frozen=True)
class Summary:
    """The headline numbers."""

    clean_accuracy: float
    robust_accuracy: float
    norm: str
    eps: float
    n_samples: int
    model: str
    data: str


@dataclass(frozen=True)
class CleanRecord:
    """Accuracy without attack."""

    top1: float
    top5: float
    n_correct: int


def passes_per_point(passes: dict[str, Any], n_points: int | float) -> dict[str, float]:
    """THE passes per point of every table: forward (backward) samples through the classifier / evaluated points.

    A sample is one input through one forward (backward) pass of the classifier itself, so a pass
    of an EOT view over k draws counts k; the divisor is the number of points the evaluation ran
    on (`summary.n_samples`), not the points a row attacked, so the rows of the attack table and
    the stages add up, and a suite's cost compares with published per-point figures.
    """
    n = max(1.0, float(n_points or 1))
    return {"forward": float(passes.get("forward_samples", 0) or 0) / n,
            "backward": float(passes.get("backward_samples", 0) or 0) / n}


@dataclass(frozen=True)
class AttackRecord:
    """One attack of the cascade: its settings, whom it attacked, and the robust accuracy after it.

    `robust_accuracy` is the per-sample worst case over this attack and every one before it;
    `standalone_accuracy` counts only this attack's own successes (and clean errors), when known.
    `passes` and `seconds` are everything the row's work cost, counted by the same count of the
    classifier as its stage's (`StageRecord`): the rows of a stage add up to the stage's cost, its
    work outside its attacks shown as a row of its own (role "overhead: ..."). `stage`: the name of
    the stage that ran it (empty in reports written before it was recorded).
    """

    name: str
    role: str
    settings: dict[str, Any]
    norm: str
    eps: float
    attacked: int
    fooled: int
    robust_accuracy: float
    passes: dict[str, int]
    seconds: float
    standalone_accuracy: float | None = None
    stage: str = ""


@dataclass(frozen=True)
class CurvePoint:
    """Robust accuracy at one radius, and what the curve spent on it.

    `attacked`: the points the curve attacked at this radius itself; `passes`: that attack's cost
    (counted as a stage's: `passes_per_point`; the curve stage's row has the seconds); `source`:
    where the number comes from
    ("cascade": the evaluation's own worst case at eps; "attack": the curve's attack on the points
    still robust; "cascade+attack": the cascade's examples shrunk toward their clean points, then
    the curve's attack on the points they left robust).
    """

    eps: float
    accuracy: float
    attacked: int = 0
    passes: dict[str, int] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class ClassRecord:
    """Accuracy of one class."""

    label: int
    name: str
    n: int
    clean_accuracy: float
    robust_accuracy: float
    flagged: bool


@dataclass(frozen=True)
class GalleryItem:
    """An adversarial example for the report, images as PNG data URIs."""

    index: int
    label: int
    clean_prediction: int
    adversarial_prediction: int
    attack: str
    norm: float
    clean_png: str
    adversarial_png: str
    perturbation_png: str


@dataclass(frozen=True)
class Finding:
    """One gradient-masking check: what it measured, whether it fired, and what was run about it.

    Attributes:
        check: Identifier, e.g. "zero-gradients", "black-box-stronger".
        title: The tell-tale sign in words.
        fired: Whether the sign was seen.
        severity: "suspicious" or "broken", the weight of the sign when it fires.
        detail: The measured numbers.
        action: What bastion ran about it (empty when it did not fire).
    """

    check: str
    title: str
    fired: bool
    severity: str
    detail: str
    action: str = ""


@dataclass(frozen=True)
class Verdict:
    """Whether the evaluation can be trusted (Athalye et al. 2018; Carlini et al. 2019; Pintor et al. 2022).

    Attributes:
        verdict: "reliable" (no sign of gradient masking), "suspicious" (signs, but escalation did
            not change the number much) or "broken" (the first attacks were fooled by the model).
        findings: Every check, fired or not.
        escalated: Whether adaptive attacks ran.
        robust_accuracy: THE robust accuracy: the worst case over every attack, escalation included.
        flattering_accuracy: The robust accuracy of the standard attacks alone, before escalation.
        adaptive: What the adaptive attacks were given: BPDA approximations, EOT samples, surrogate.
        defenses: The defenses found in the model and what each declares.
    """

    verdict: str
    findings: list[Finding]
    escalated: bool
    robust_accuracy: float
    flattering_accuracy: float
    adaptive: dict[str, Any] = field(default_factory=dict)
    defenses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fired(self) -> list[Finding]:
        """The findings that fired."""
        return [f for f in self.findings if f.fired]


@dataclass(frozen=True)
class StageRecord:
    """One stage as it ran: its settings, cost and result (the JSON form of the stage's typed result).

    `passes` counts calls and samples through the classifier during the stage; `passes_per_point`
    divides the samples by the number of evaluated points (`passes_per_point`, the one definition of
    every table), so costs compare with published figures.
    """

    name: str
    kind: str
    settings: dict[str, Any]
    seconds: float
    passes: dict[str, int]
    passes_per_point: dict[str, float]
    headline: str
    result: dict[str, Any]


@dataclass(frozen=True)
class EvalResult:
    """The whole evaluation: what `bastion evaluate` writes as report.json."""

    run_id: str
    created_at: str
    summary: Summary
    clean: CleanRecord
    attacks: list[AttackRecord]
    curve: list[CurvePoint]
    per_class: list[ClassRecord]
    class_floor: float
    gallery: list[GalleryItem]
    warnings: list[str]
    provenance: dict[str, Any]
    config: dict[str, Any]
    verdict: Verdict | None = None
    stages: list[StageRecord] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def stage_results(self, kind: str) -> list[dict[str, Any]]:
        """The results of every stage of `kind`, in run order."""
        return [s.result for s in self.stages if s.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary, `schema_version` first."""
        data = asdict(self)
        return {"schema_version": data.pop("schema_version"), **data}

    def to_json(self) -> str:
        """The JSON text of report.json."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """Rebuild from `to_dict()` output; refuses reports of another schema version."""
        version = data.get("schema_version")
        if version not in _READABLE:
            raise InputError(
                f"report schema_version {version!r} is not supported "
                f"(this bastion reads {', '.join(map(str, _READABLE))})"
            )
        fields = {k: v for k, v in data.items() if k not in _LEGACY_KEYS}
        fields["schema_version"] = SCHEMA_VERSION
        fields["stages"] = [StageRecord(**s) for s in data.get("stages", [])] or [
            StageRecord(**s) for s in legacy_stages(data)]
        fields["summary"] = Summary(**data["summary"])
        fields["clean"] = CleanRecord(**data["clean"])
        fields["attacks"] = [AttackRecord(**a) for a in data["attacks"]]
        fields["curve"] = [CurvePoint(**p) for p in data["curve"]]
        fields["per_class"] = [ClassRecord(**c) for c in data["per_class"]]
        fields["gallery"] = [GalleryItem(**g) for g in data["gallery"]]
        if isinstance(data.get("verdict"), dict):
            verdict = dict(data["verdict"])
            verdict["findings"] = [Finding(**f) for f in verdict.get("findings", [])]
            fields["verdict"] = Verdict(**verdict)
        return cls(**fields)

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        """Read a report.json."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InputError(f"report not found: {path}") from None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(f"{path} is not a bastion report: {error}") from None

    def save(self, path: str | Path) -> Path:
        """Write report.json atomically."""
        return write_atomic(path, self.to_json())


_LEGACY_KEYS = {"curve_settings": "curve", "min_norm": "min-norm", "certify": "certify", "ensemble": "members",
                "extended": "extended", "detection": "detection"}


def legacy_stages(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage records of a schema-1 report, rebuilt from its per-feature keys (as far as they go)."""
    stages = []
    for key, kind in _LEGACY_KEYS.items():
        value = report.get(key)
        if not isinstance(value, dict) or not value:
            continue
        result = {"points": report.get("curve", []), "settings": value} if kind == "curve" else {"section": value}
        stages.append({"name": kind, "kind": kind, "settings": {}, "seconds": float(value.get("seconds", 0.0) or 0.0),
                       "passes": {}, "passes_per_point": {}, "headline": "", "result": result})
    return stages


def stage_records(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's stages in run order (schema 2), or those a schema-1 report's per-feature keys describe."""
    stages = [s for s in report.get("stages") or [] if isinstance(s, dict)]  # read leniently
    return stages or legacy_stages(report)


def stage_result(report: dict[str, Any], kind: str) -> dict[str, Any]:
    """The result of the report's first stage of `kind` (empty when none ran)."""
    results = (s.get("result") for s in stage_records(report) if s.get("kind") == kind)
    return next((r for r in results if isinstance(r, dict)), {})
