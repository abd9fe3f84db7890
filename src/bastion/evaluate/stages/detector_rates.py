"""Detectors calibrated and rated on attacks, as the first stage of `bastion detect` (its adaptive attacks follow)."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.attacks import ATTACKS
from bastion.attacks.base import Attack
from bastion.data import load_dataset
from bastion.detect.detectors import Detector, make_detector
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.detection_html import detection_section_html
from bastion.evaluate.stages.detection_parts import correct_mask
from bastion.evaluate.stages.detection_run import DEFAULT_DETECTORS, detection_stage
from bastion.evaluate.validation import check_fraction, check_int

__all__ = ["DetectorRatesResult", "DetectorRatesSettings", "DetectorRatesStage", "STREAM"]

#: Prefix of the detection streams (`bastion.evaluate.stages.detection_run.detection_stage`'s `stream`).
STREAM = "detection"


@dataclass(frozen=True)
class DetectorRatesSettings:
    """Attributes: fpr target; detectors and squeezers; the rated attacks and their steps; the calibration data.

    `calibration`, `calibration_limit` and `data_root` load separate clean calibration images (None:
    a seeded half of the points calibrates, the other half is held out); `adaptive_limit` is how many
    held-out points the adaptive stages after this one attack.
    """

    fpr: float = 0.05
    detectors: list[str] = field(default_factory=lambda: list(DEFAULT_DETECTORS))
    squeezers: list[str] | None = None
    attacks: list[str] = field(default_factory=lambda: ["pgd"])
    steps: int | None = None
    calibration: str | None = None
    calibration_limit: int | None = None
    data_root: str | None = None
    adaptive_limit: int = 500

    def __post_init__(self) -> None:
        check_fraction("fpr", self.fpr)
        check_int("adaptive_limit", self.adaptive_limit, 1)
        if not self.detectors:
            raise InputError("--detectors names no detector")
        self.built_detectors()  # an unknown detector, squeezer or attack is refused before the run
        self.built_attacks()

    def built_detectors(self) -> list[Detector]:
        """The detectors, by name."""
        return [make_detector(name, self.squeezers) for name in self.detectors]

    def built_attacks(self) -> list[Attack]:
        """The rated attacks; `steps` goes to those that take a number of steps (FGSM has none)."""
        attacks = []
        for name in self.attacks:
            factory = ATTACKS.get(name)
            takes_steps = self.steps is not None and "steps" in inspect.signature(factory).parameters
            attacks.append(ATTACKS.create(name, **({"steps": self.steps} if takes_steps else {})))
        return attacks


@dataclass(frozen=True)
class DetectorRatesResult(StageResult):
    """Per detector its threshold and rates (`detection_run.detection_stage`, without the adaptive row).

    Attributes:
        detectors: By detector name: threshold, calibration and held-out false-positive rates,
            each attack's detection rate.
        settings: The section's settings (fpr, threat model, calibration, attacks, ...).
        warnings: Held-out false-positive rates that miss their target.
        seconds: Wall time.
        adaptive_points: The held-out correctly classified points the adaptive attacks run on.
    """

    detectors: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    warnings: list[str]
    seconds: float
    adaptive_points: list[int]

    def __post_init__(self) -> None:
        for name in ("detectors", "settings"):  # stored as their JSON form, so the result equals its round trip
            object.__setattr__(self, name, json.loads(json.dumps(getattr(self, name), default=str)))


@STAGES.register("detector-rates")
class DetectorRatesStage(Stage):
    """Detectors with conformal thresholds, each rated on the attacks' successful examples.

    Feature squeezing (Xu et al., NDSS 2018, arXiv:1704.01155), confidence, entropy and margin.
    """

    kind = "detector-rates"
    Settings = DetectorRatesSettings
    Result = DetectorRatesResult
    settings: DetectorRatesSettings

    def run(self, ctx: EvalContext) -> DetectorRatesResult:
        """Calibrate every detector and rate it on every attack."""
        s = self.settings
        calibration = (load_dataset(s.calibration, root=s.data_root, limit=s.calibration_limit, seed=ctx.seed)
                       if s.calibration else None)
        section = detection_stage(ctx, fpr=s.fpr, detectors=s.built_detectors(), calibration=calibration,
                                  attacks=s.built_attacks(), adaptive_steps=0, adaptive_limit=s.adaptive_limit,
                                  stream=STREAM)
        points = _adaptive_points(ctx, calibration is not None)[: s.adaptive_limit]
        if len(points) != section["settings"]["adaptive_points"]:
            raise RuntimeError("the held-out split differs from the detection stage's")  # a bug, not a user mistake
        return DetectorRatesResult(detectors=section["detectors"], settings=section["settings"],
                                   warnings=list(section["warnings"]), seconds=section["seconds"],
                                   adaptive_points=points.tolist())

    @classmethod
    def headline(cls, result: DetectorRatesResult) -> str:
        """Each detector's detection rate of the first attack."""
        attack = (result.settings.get("attacks") or ["-"])[0]
        parts = [f"{name} {_rate(d.get('attacks', {}).get(attack, {}).get('rate'))}"
                 for name, d in result.detectors.items()]
        return f"{attack} detected at {result.settings.get('fpr', 0):.0%} false positives: " + ", ".join(parts)

    @classmethod
    def html_section(cls, result: DetectorRatesResult) -> str:
        """The detectors' table."""
        return detection_section_html({"detectors": result.detectors, "settings": result.settings,
                                       "warnings": result.warnings})


def _adaptive_points(ctx: EvalContext, calibrated_apart: bool) -> torch.Tensor:
    """The held-out points the model classifies correctly: the split `detection_stage` draws in this stage."""
    n = len(ctx.data)
    if calibrated_apart:
        held_out = torch.arange(n)
    else:
        order = torch.randperm(n, generator=ctx.generator(f"{STREAM}/split"))
        held_out = order[n // 2:].sort().values
    return held_out[correct_mask(ctx)[held_out]]


def _rate(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "-"
