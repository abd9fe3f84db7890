"""The certify stage's typed result: the summary of randomized smoothing's certificates, and each point's row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.evaluate.stages.sparse import SparseResult, optional

__all__ = ["CertifiedAt", "CertifyResult", "CertifySummary", "Comparison"]


@dataclass(frozen=True)
class CertifiedAt:
    """The certified accuracy at one radius of the table."""

    radius: float
    accuracy: float


@dataclass(frozen=True)
class CertifySummary:
    """The headline numbers of the per-point rows (`bastion.certify.summary.summarize`).

    `fixed_samples` and `saved` (what fixed-n CERTIFY would spend, and the ratio) are there when the
    procedure compares with a fixed n; `mean_radius` and the cost (`samples`, `samples_per_point`)
    are missing only from reports written before they were recorded.
    """

    n_points: int
    certified_accuracy: list[CertifiedAt]
    accuracy: float
    abstain_rate: float
    median_radius_correct: float
    max_certifiable_radius: float
    seconds_per_image: float
    mean_radius: float | None = optional()
    samples: int | None = optional()
    samples_per_point: float | None = optional()
    fixed_samples: int | None = optional()
    saved: float | None = optional()


@dataclass(frozen=True)
class Comparison:
    """One line of the certified-against-empirical table: what was measured, and its accuracy."""

    what: str
    accuracy: float


@dataclass(frozen=True)
class CertifyResult(SparseResult):
    """What `certify_run.certify_stage` returns, typed.

    Attributes:
        settings: sigma, the procedure's settings, radii, seed and SmoothAdv's settings.
        summary: The headline numbers.
        rows: One per point (index, label, prediction, radius, correct, samples, ...; by procedure).
        threat_radius: The L2 radius containing the threat model.
        certified_at_threat: The certified accuracy at that radius.
        comparison: Certified next to empirical accuracies.
    """

    settings: dict[str, Any]
    summary: CertifySummary
    rows: list[dict[str, Any]]
    threat_radius: float
    certified_at_threat: float
    comparison: list[Comparison]
    warnings: list[str]
    seconds: float
