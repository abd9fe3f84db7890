"""The detection stage's typed result: per detector, its threshold, clean false positives and detection rates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.evaluate.stages.sparse import SparseResult, optional

__all__ = ["AdaptiveRate", "AttackRate", "DetectionResult", "DetectorRecord", "FprCheck"]


@dataclass(frozen=True)
class AttackRate:
    """One detector against one attack's examples (`bastion.detect.rates.AttackDetection`).

    `rate`: detected / successful examples; `evasion_rate`: attacked points that fool the classifier
    undetected; None where there is nothing to divide by.
    """

    attack: str
    n_attacked: int
    n_success: int
    n_detected: int
    rate: float | None
    evasion_rate: float | None


@dataclass(frozen=True)
class AdaptiveRate(AttackRate):
    """The detector-aware attack against one detector, with the attack's settings."""

    settings: dict[str, Any] | None = None


@dataclass(frozen=True)
class FprCheck:
    """The held-out false-positive rate, its Clopper-Pearson interval, and whether it misses the target."""

    rate: float | None
    ci: list[float] | None
    confidence: float
    target: float
    above: bool
    missed: bool


@dataclass(frozen=True)
class DetectorRecord:
    """A calibrated detector: its threshold (conformal, Vovk et al. 2005), clean false positives and rates.

    `adaptive` is there when the adaptive attack ran; `clean_fpr_check` is missing only from reports
    written before it was recorded.
    """

    detector: str
    settings: str
    threshold: float
    fpr: float
    n_calibration: int
    calibration_fpr: float | None
    n_clean: int
    clean_fpr: float | None
    attacks: dict[str, AttackRate]
    clean_fpr_check: FprCheck | None = optional()
    adaptive: AdaptiveRate | None = optional()


@dataclass(frozen=True)
class DetectionResult(SparseResult):
    """Every detector by name, the run's settings (fpr, threat, calibration, attacks, ...), warnings and seconds."""

    detectors: dict[str, DetectorRecord]
    settings: dict[str, Any]
    warnings: list[str]
    seconds: float

    @property
    def fpr(self) -> float:
        """The false-positive rate the detectors were calibrated for."""
        return float(self.settings.get("fpr", 0.05))
