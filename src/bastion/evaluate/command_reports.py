"""The files of the commands beside `bastion evaluate`, read off their suites' stage results.

Each function takes the context of a finished suite (`bastion.evaluate.commands.run_suite`) and
returns the JSON-ready report the command writes (detection.json, patch.json, universal.json,
spatial.json, corruptions.json), with the keys those files have always had.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TypeVar

from bastion.attacks.patch import Patch
from bastion.attacks.universal import UniversalResult
from bastion.corruptions import mean_corruption_error
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stages.clean import CleanResult
from bastion.evaluate.stages.corruption import CorruptionStageResult
from bastion.evaluate.stages.detection_parts import adaptive_warnings
from bastion.evaluate.stages.detector_adaptive import DetectorAdaptiveResult
from bastion.evaluate.stages.detector_rates import DetectorRatesResult
from bastion.evaluate.stages.patch_fit import PatchFitResult
from bastion.evaluate.stages.patch_measure import PatchMeasureResult
from bastion.evaluate.stages.spatial import SpatialStageResult
from bastion.evaluate.stages.universal_fit import UniversalFitResult
from bastion.evaluate.stages.universal_score import UniversalScoreResult

__all__ = ["corruptions_report", "detection_report", "detection_section", "learned_perturbation", "patch_report",
           "spatial_report", "trained_patch", "universal_report"]

R = TypeVar("R")


def _one(ctx: EvalContext, kind: type[R]) -> R:
    found = ctx.earlier(kind)
    if found is None:
        raise ValueError(f"the suite ran no stage with a {kind.__name__}")  # a suite bug, not a user mistake
    return found


def detection_section(ctx: EvalContext, adaptive_steps: int) -> dict[str, Any]:
    """The detection section (`bastion.evaluate.stages.detection_run.detection_stage`'s form) from the stages."""
    rates = _one(ctx, DetectorRatesResult)
    adaptive = {r.detector: r for r in ctx.all_earlier(DetectorAdaptiveResult)}
    section: dict[str, Any] = {"detectors": {}, "warnings": []}
    for name, rated in rates.detectors.items():
        entry = dict(rated)
        if name in adaptive:
            entry["adaptive"] = adaptive[name].row
            section["warnings"] += adaptive_warnings(name, entry)
        section["detectors"][name] = entry
    section["settings"] = {**rates.settings, "adaptive_steps": adaptive_steps if adaptive else 0}
    section["warnings"] += rates.warnings
    section["seconds"] = rates.seconds + sum(r.seconds for r in adaptive.values())
    return section


def detection_report(ctx: EvalContext, *, adaptive_steps: int, model: str, model_fingerprint: str,
                     command: str) -> dict[str, Any]:
    """detection.json: the section with its provenance."""
    return {"schema_version": 1, "kind": "detection",
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "provenance": {"model": model, "model_fingerprint": model_fingerprint, "data": ctx.data.name,
                           "data_fingerprint": ctx.data.fingerprint, "command": command},
            "detection": detection_section(ctx, adaptive_steps)}


def patch_report(ctx: EvalContext, *, model: str, png_size: int) -> dict[str, Any]:
    """patch.json: where the patch was trained and measured, its size, and how well it works."""
    fit, measured = _one(ctx, PatchFitResult), _one(ctx, PatchMeasureResult)
    return {
        "model": model, "train_data": fit.train_data, "n_train": fit.n_train, "eval_data": measured.eval_data,
        "n_eval": measured.n_eval, "settings": fit.settings, "target": fit.target, "side_pixels": fit.side,
        "area": fit.area, "success_rate": measured.success_rate, "attacked": measured.attacked,
        "placements": measured.placements, "clean_accuracy": measured.clean_accuracy,
        "patched_accuracy": measured.patched_accuracy, "train_seconds": fit.seconds, "train_passes": fit.passes,
        "png_size": png_size, "seed": ctx.seed,
    }


def trained_patch(ctx: EvalContext) -> Patch:
    """The patch the suite trained, on the model's device and dtype (what patch.png and patch.pt hold)."""
    return _one(ctx, PatchFitResult).patch(ctx.device, ctx.dtype)


def learned_perturbation(ctx: EvalContext) -> UniversalResult:
    """The universal perturbation the suite learned (its `save` writes universal.pt and universal.png)."""
    return _one(ctx, UniversalFitResult).universal(ctx.threat, ctx.device, ctx.dtype)


def universal_report(ctx: EvalContext, *, model: str) -> dict[str, Any]:
    """universal.json: the learned perturbation's training and held-out fooling rates."""
    fit, score = _one(ctx, UniversalFitResult), _one(ctx, UniversalScoreResult)
    held_out = {"n": score.n, "fooling_rate": score.fooling_rate, "clean_accuracy": score.clean_accuracy,
                "perturbed_accuracy": score.perturbed_accuracy}
    return {
        "kind": "universal", "method": fit.method, "threat": ctx.threat.describe(), "settings": fit.settings,
        "model": model, "train_data": fit.train_data, "n_train": fit.n_train, "eval_data": score.eval_data,
        "train_fooling_rate": fit.train_fooling_rate, "history": list(fit.history), "held_out": held_out,
        "norm_of_delta": score.norm_of_delta, "passes": fit.passes, "seconds": fit.seconds, "seed": ctx.seed,
    }


def spatial_report(ctx: EvalContext, *, model: str, max_angle: float, max_translation: float) -> dict[str, Any]:
    """spatial.json: accuracy clean, under each method's worst transformation, and under the per-point worst of all."""
    clean = _one(ctx, CleanResult)
    methods = {r.method: r for r in ctx.all_earlier(SpatialStageResult)}
    n = len(ctx.data)
    fooled = set().union(*(r.fooled for r in methods.values()))
    accuracy = {"clean": clean.top1, **{m: r.n_correct / max(n, 1) for m, r in methods.items()},
                "worst case": (n - len(fooled)) / max(n, 1)}
    return {"kind": "spatial", "model": model, "data": ctx.data.name, "n": n,
            "bounds": {"max_angle": max_angle, "max_translation": max_translation}, "accuracy": accuracy,
            "seconds": {m: r.seconds for m, r in methods.items()},
            "settings": {m: r.settings for m, r in methods.items()}, "seed": ctx.seed}


def corruptions_report(ctx: EvalContext, *, model: str) -> dict[str, Any]:
    """corruptions.json: the model's table and, with a baseline stage, the baseline's and the mCE."""
    tables = ctx.all_earlier(CorruptionStageResult)
    table = next(t for t in tables if t.model is None)
    report: dict[str, Any] = {"kind": "corruptions", "model": model, "data": ctx.data.name,
                              "data_fingerprint": ctx.data.fingerprint, **table.table().to_dict(), "baseline": None}
    baseline = next((t for t in tables if t.model is not None), None)
    if baseline is not None:
        report["baseline"] = {"model": baseline.model, **baseline.table().to_dict(),
                              **mean_corruption_error(table.table(), baseline.table()).to_dict()}
    return report
