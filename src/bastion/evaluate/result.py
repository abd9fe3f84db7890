"""Typed results of an evaluation and their JSON form (`report.json`, versioned by `schema_version`).

The stable top-level keys, for scripts and CI: `schema_version`, `summary`, `clean`, `warnings`,
`provenance`, `verdict` (the gradient-masking verdict, its findings and the robust accuracy before
and after escalation) and `stages`: every stage in run order with its settings, seconds, passes (in
total and per point) and its own typed result. The JSON is the source of truth; the HTML and the
terminal table are rendered from it.

Schema 3 keeps each result once, in its stage: the attack table, the curve and the per-class rows
are read off the stages (`EvalResult.attacks`, `.curve`, `.per_class`; for the JSON,
`bastion.evaluate.report_schema.attack_rows` and its neighbours), and `EvalResult.stage_results`
gives every stage's typed result by name. The attack table is every stage's attack records
(`StageResult.attack_records`), each with its `kind` (`AttackKind`). `from_dict` reads schemas 1
and 2 too, and reports written before attack records had a kind
(`bastion.evaluate.report_schema.upgrade`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from bastion._io import write_atomic
from bastion.errors import InputError
from bastion.evaluate.records import AttackKind, AttackRecord, Finding
from bastion.evaluate.report_schema import SCHEMA_VERSION, attack_table, class_floor, class_rows, curve_rows, upgrade
from bastion.evaluate.stage import STAGES, Stage, StageResult

__all__ = ["SCHEMA_VERSION", "AttackKind", "AttackRecord", "ClassRecord", "CleanRecord", "CurvePoint", "EvalResult",
           "Finding", "GalleryItem", "StageRecord", "Summary", "Verdict", "passes_per_point", "write_atomic"]


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
    gallery: list[GalleryItem]
    warnings: list[str]
    provenance: dict[str, Any]
    config: dict[str, Any]
    verdict: Verdict | None = None
    stages: list[StageRecord] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @cached_property
    def stage_results(self) -> dict[str, StageResult]:
        """Every stage's typed result by stage name, in run order (stages of kinds not registered here left out).

        Example:
            >>> result.stage_results["certify"].summary.certified_accuracy
        """
        kinds = {s.kind: cast("type[Stage]", STAGES.get(s.kind)) for s in self.stages if s.kind in STAGES}
        return {s.name: kinds[s.kind].Result.from_dict(s.result) for s in self.stages if s.kind in kinds}

    def _stages_view(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "stages": [{"kind": s.kind, "result": s.result}
                                                                    for s in self.stages]}

    @property
    def attacks(self) -> list[AttackRecord]:
        """The attack table: every stage's attack records (`StageResult.attack_records`), in run order."""
        return attack_table(self.stage_results.values())

    @property
    def curve(self) -> list[CurvePoint]:
        """The accuracy-vs-eps curve (empty when no curve stage ran)."""
        return [CurvePoint(**point) for point in curve_rows(self._stages_view())]

    @property
    def per_class(self) -> list[ClassRecord]:
        """Clean and robust accuracy of each class (empty when the per-class stage did not run)."""
        return [ClassRecord(**row) for row in class_rows(self._stages_view())]

    @property
    def class_floor(self) -> float:
        """The robust accuracy under which a class is flagged (0 when the per-class stage did not run)."""
        return class_floor(self._stages_view())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary, `schema_version` first."""
        data = asdict(self)
        return {"schema_version": data.pop("schema_version"), **data}

    def to_json(self) -> str:
        """The JSON text of report.json."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """Rebuild from `to_dict()` output, or from a report of an earlier schema (`report_schema.upgrade`)."""
        data = upgrade(data)
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["stages"] = [StageRecord(**s) for s in data.get("stages", [])]
        fields["summary"] = Summary(**data["summary"])
        fields["clean"] = CleanRecord(**data["clean"])
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
