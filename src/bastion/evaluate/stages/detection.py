"""Run-time detection as a stage: detectors calibrated at a target false-positive rate, rated, then attacked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.attacks import FGSM, PGD
from bastion.data import load_dataset
from bastion.detect.registry import DETECTORS
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag, open_unit
from bastion.evaluate.stage import STAGES, Stage
from bastion.evaluate.stages.detection_html import detection_section_html
from bastion.evaluate.stages.detection_result import DetectionResult
from bastion.evaluate.stages.detection_run import detection_stage
from bastion.evaluate.validation import check_fraction, check_int, check_loss, check_rel_step

__all__ = ["DetectionResult", "DetectionSettings", "DetectionStage"]


@dataclass(frozen=True)
class DetectionSettings:
    """Attributes: fpr target; calibration data spec (None: half the points); adaptive_limit; PGD's settings."""

    fpr: float = 0.05
    calibration: str | None = None
    adaptive_limit: int = 500
    steps: int = 20
    rel_step: float | None = None
    loss: str = "ce"
    data_root: str | None = None

    def __post_init__(self) -> None:
        check_fraction("detect_fpr", self.fpr)
        check_int("detect_adaptive_limit", self.adaptive_limit, 0)
        check_int("steps", self.steps, 1)
        check_rel_step(self.rel_step)
        check_loss(self.loss)


@STAGES.register("detection")
class DetectionStage(Stage):
    """Feature squeezing (Xu et al., NDSS 2018), confidence, entropy and margin detectors with conformal thresholds.

    Each is rated on FGSM and PGD examples, then attacked by a detector-aware PGD (Bryniarski et
    al. 2022, arXiv:2108.01212) that must fool the classifier and evade the detector at once.
    """

    kind = "detection"
    Settings = DetectionSettings
    Result = DetectionResult
    settings: DetectionSettings
    flags = (
        Flag("detect", False, f"calibrate the detectors ({', '.join(DETECTORS.names())}) on clean data and report "
             "their detection rates of FGSM, PGD and an adaptive attack", bool),
        Flag("detect_fpr", 0.05, "detectors' false-positive rate on clean data", float, check=open_unit,
             expects="lie in (0, 1)"),
        Flag("detect_calibration", None, "clean data the thresholds are calibrated on (default: half of the "
             "evaluated points)", metavar="DATA"),
        Flag("detect_adaptive_limit", 500, "most points the adaptive attack on each detector runs on", int,
             minimum=0),
    )

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The calibration, and the attacks' settings."""
        return {"steps": options["steps"], "rel_step": options["rel_step"], "loss": options["loss"],
                "fpr": options["detect_fpr"], "calibration": options["detect_calibration"],
                "adaptive_limit": options["detect_adaptive_limit"], "data_root": options["data_root"]}

    def run(self, ctx: EvalContext) -> DetectionResult:
        """Calibrate, rate and attack every detector."""
        s = self.settings
        calibration = load_dataset(s.calibration, root=s.data_root) if s.calibration else None
        attacks = [FGSM(loss=s.loss), PGD(steps=s.steps, rel_step=s.rel_step, loss=s.loss)]
        result = DetectionResult.from_section(detection_stage(ctx, fpr=s.fpr, calibration=calibration,
                                                              attacks=attacks, adaptive_limit=s.adaptive_limit))
        ctx.warnings.extend(f"detection: {w}" for w in result.warnings)
        return result

    @classmethod
    def headline(cls, result: DetectionResult) -> str:
        """Each detector's PGD and adaptive detection rates."""
        parts = []
        for name, entry in result.detectors.items():
            pgd = entry.attacks["pgd"].rate if "pgd" in entry.attacks else None
            adaptive = entry.adaptive.rate if entry.adaptive is not None else None
            parts.append(f"{name} {_rate(pgd)} / {_rate(adaptive)}")
        return f"detected (PGD / adaptive) at {result.fpr:.0%} false positives: " + ", ".join(parts)

    @classmethod
    def html_section(cls, result: DetectionResult) -> str:
        """The detectors' table."""
        return detection_section_html(result.to_dict())


def _rate(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "-"
