"""The adaptive attack on one calibrated detector, as a stage of `bastion detect` after its `detector-rates` stage."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import torch

from bastion.detect.calibrate import CalibratedDetector
from bastion.detect.detectors import make_detector
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.detection_parts import adaptive_row
from bastion.evaluate.stages.detector_rates import STREAM, DetectorRatesResult
from bastion.evaluate.validation import check_int

__all__ = ["DetectorAdaptiveResult", "DetectorAdaptiveSettings", "DetectorAdaptiveStage"]


@dataclass(frozen=True)
class DetectorAdaptiveSettings:
    """Attributes: the detector (by name) and its squeezers; the adaptive attack's steps."""

    detector: str = "confidence"
    squeezers: list[str] | None = None
    steps: int = 100

    def __post_init__(self) -> None:
        check_int("adaptive_steps", self.steps, 1)
        make_detector(self.detector, self.squeezers)  # an unknown detector is refused before the run


@dataclass(frozen=True)
class DetectorAdaptiveResult(StageResult):
    """The detector's adaptive row: points attacked, how many fool the classifier, how many of those it flags.

    Attributes:
        detector: The detector's name.
        row: attack, settings, n_attacked, n_success, n_detected, rate (detected share of the
            successes), evasion_rate (share of the points misclassified and not flagged).
        seconds: Wall time.
    """

    detector: str
    row: dict[str, Any]
    seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "row", json.loads(json.dumps(self.row, default=str)))


@STAGES.register("detector-adaptive")
class DetectorAdaptiveStage(Stage):
    """A detector-aware PGD that must fool the classifier and evade the detector at once.

    Carlini & Wagner 2017 (arXiv:1705.07263); Bryniarski et al. 2022 (arXiv:2108.01212). The detector's
    threshold is the one the `detector-rates` stage before it calibrated.
    """

    kind = "detector-adaptive"
    Settings = DetectorAdaptiveSettings
    Result = DetectorAdaptiveResult
    settings: DetectorAdaptiveSettings

    def run(self, ctx: EvalContext) -> DetectorAdaptiveResult:
        """Attack the detector and the classifier together on the held-out correct points."""
        start = time.perf_counter()
        rates = ctx.earlier(DetectorRatesResult)
        detector = make_detector(self.settings.detector, self.settings.squeezers)
        entry = rates.detectors.get(detector.name) if rates is not None else None
        if rates is None or entry is None:
            raise InputError(f"stage {self.name!r} attacks the {detector.name} detector: a detector-rates stage "
                             "that calibrates it must run before it")
        guard = CalibratedDetector(detector, float(entry["threshold"]), float(rates.settings["fpr"]),
                                   int(entry["n_calibration"]), float(entry["calibration_fpr"]))
        points = torch.tensor(rates.adaptive_points, dtype=torch.long)
        row = adaptive_row(ctx, guard, points, self.settings.steps, f"{STREAM}/adaptive/{detector.name}")
        return DetectorAdaptiveResult(detector=detector.name, row=row, seconds=time.perf_counter() - start)

    @classmethod
    def headline(cls, result: DetectorAdaptiveResult) -> str:
        """Detected and evading shares of the adaptive attack."""
        rate, evasion = result.row.get("rate"), result.row.get("evasion_rate")
        return (f"{result.detector}: adaptive attack detected {_pct(rate)}, evades on {_pct(evasion)} of "
                f"{result.row.get('n_attacked', 0)} points")


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "-"
