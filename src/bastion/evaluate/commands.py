"""The commands beside `bastion evaluate` as suites of stages, run by the evaluation's `Runner`.

`bastion detect`, `patch`, `universal`, `spatial` and `corruptions` each build their suite here and
run it with `run_suite`: the runner saves every finished stage to `state.pt` in the output folder,
so an interrupted run resumes where it stopped (`resume`), a changed setting is refused in one line
naming it, under torchrun every process takes its share of the chunks, and every stage draws its
random numbers from the run seed and its own name. `bastion.evaluate.command_reports` turns the
stages' results into each command's files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bastion.data import ImageSet
from bastion.detect.detectors import make_detector
from bastion.evaluate.context import EvalContext
from bastion.evaluate.result import StageRecord
from bastion.evaluate.runner import Runner
from bastion.evaluate.stage import Stage
from bastion.evaluate.stages.clean import CleanStage
from bastion.evaluate.stages.corruption import CorruptionStage
from bastion.evaluate.stages.detector_adaptive import DetectorAdaptiveStage
from bastion.evaluate.stages.detector_rates import DetectorRatesStage
from bastion.evaluate.stages.patch_fit import PatchFitStage
from bastion.evaluate.stages.patch_measure import PatchMeasureStage
from bastion.evaluate.stages.spatial import SPATIAL_METHODS, SpatialStage
from bastion.evaluate.stages.universal_fit import UniversalFitStage
from bastion.evaluate.stages.universal_score import UniversalScoreStage
from bastion.models import model_device_dtype
from bastion.models.loading import fingerprint_model
from bastion.threat import ThreatModel

__all__ = ["SuiteRun", "corruptions_suite", "detect_suite", "patch_suite", "run_suite", "spatial_suite",
           "universal_suite"]


@dataclass(frozen=True)
class SuiteRun:
    """A finished suite: the context (its `results` by stage name), the stages' records and the runner.

    Call `finish` once the command's files are written: it removes the saved state.
    """

    ctx: EvalContext
    records: list[StageRecord]
    runner: Runner

    def finish(self) -> None:
        """Remove `state.pt`: the run is complete."""
        self.runner.finish()


def run_suite(stages: Sequence[Stage], model: nn.Module, data: ImageSet, *, threat: ThreatModel | None = None,
              seed: int = 0, batch_size: int = 256, out: str | Path | None = None, resume: bool = False,
              progress: bool = False, identity: dict[str, Any] | None = None) -> SuiteRun:
    """Run `stages` on `model` and `data`, saving after each stage in `out` and resuming a matching saved run.

    Args:
        stages: The suite (unique names).
        model: Maps images in [0, 1] to logits; its device and dtype are used.
        data: The evaluated (or held-out) points.
        threat: The threat model; None for commands without one (patch, spatial, corruptions).
        seed: The run seed every stage's random streams derive from.
        batch_size: Points per chunk.
        out: Folder of `state.pt`; None keeps no state.
        resume: Restore the stages a matching earlier run finished (one with another model, data,
            seed or stage settings is refused in one line that names what changed).
        progress: Show progress bars.
        identity: More of what the saved state belongs to, by name (e.g. a training set's spec).
    """
    device, dtype = model_device_dtype(model)
    threat = threat if threat is not None else ThreatModel("linf", 0.0)
    ctx = EvalContext(model, data, threat, device, dtype, batch_size=batch_size, seed=seed, progress=progress)
    full = {"model fingerprint": fingerprint_model(model), "data fingerprint": data.fingerprint,
            "norm": threat.norm.name, "eps": threat.eps, "seed": seed, "batch_size": batch_size, **(identity or {})}
    key = hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:20]
    runner = Runner(stages, state_dir=out, resume=resume, run_key=key, identity=full)
    return SuiteRun(ctx, runner.run(ctx), runner)


def detect_suite(*, detectors: Sequence[str], squeezers: Sequence[str] | None = None, adaptive_steps: int = 100,
                 **rates: Any) -> list[Stage]:
    """Calibrate and rate the detectors, then one adaptive attack per detector (none when `adaptive_steps` is 0).

    `rates` are `DetectorRatesSettings` (fpr, attacks, steps, calibration, adaptive_limit, ...).
    """
    squeezers = list(squeezers) if squeezers is not None else None
    stages: list[Stage] = [DetectorRatesStage("rates", detectors=list(detectors), squeezers=squeezers, **rates)]
    if adaptive_steps > 0:
        names = dict.fromkeys(make_detector(d, squeezers).name for d in detectors)
        stages += [DetectorAdaptiveStage(f"adaptive-{name}", detector=name, squeezers=squeezers, steps=adaptive_steps)
                   for name in names]
    return stages


def patch_suite(*, split: bool, placements: int = 4, **fit: Any) -> list[Stage]:
    """Train the patch (`PatchFitSettings`), then measure it on the held-out images (the second half if `split`)."""
    return [PatchFitStage("patch-fit", **fit), PatchMeasureStage("patch-measure", placements=placements, split=split)]


def universal_suite(**fit: Any) -> list[Stage]:
    """Learn the perturbation on its training set (`UniversalFitSettings`), then score it on the evaluated points."""
    return [UniversalFitStage("universal-fit", **fit), UniversalScoreStage("universal-score", split=False)]


def spatial_suite(**settings: Any) -> list[Stage]:
    """Clean accuracy, then each spatial method (`SpatialSettings` but `method`) on every point."""
    return [CleanStage("clean"), *(SpatialStage(m, method=m, **settings) for m in SPATIAL_METHODS)]


def corruptions_suite(*, corruptions: Sequence[str] | None, severities: Sequence[int],
                      baseline: str | None = None, baseline_weights: str | None = None) -> list[Stage]:
    """The model under every corruption and severity, then the baseline model (whose errors normalize the mCE)."""
    common = {"corruptions": list(corruptions) if corruptions is not None else None, "severities": list(severities)}
    stages: list[Stage] = [CorruptionStage("corruptions", **common)]
    if baseline:
        stages.append(CorruptionStage("baseline", model=baseline, weights=baseline_weights, **common))
    return stages
