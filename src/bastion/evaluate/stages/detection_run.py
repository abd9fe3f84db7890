"""The detection stage's work: detectors calibrated on clean data, rated on attacks, then attacked."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bastion.attacks import PGD
from bastion.attacks.base import Attack
from bastion.data import ImageSet
from bastion.detect.calibrate import calibrate
from bastion.detect.detectors import Detector, make_detector
from bastion.detect.rates import detection_rates, fpr_warnings
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stages.detection_parts import (
    adaptive_row,
    adaptive_warnings,
    clean_images,
    correct_mask,
    images_of,
)

__all__ = ["DEFAULT_DETECTORS", "AdversarialSet", "collect_adversarial", "detection_stage"]

#: The detectors a run calibrates by default (every one of `DETECTORS`, the one Xu et al. propose first).
DEFAULT_DETECTORS = ("feature-squeezing", "confidence", "entropy", "margin")


@dataclass(frozen=True)
class AdversarialSet:
    """One attack's adversarial examples for some points of `ctx.data`.

    Attributes:
        indices: (N,) indices into `ctx.data`.
        x_adv: (N, C, H, W) adversarial inputs (any device).
        success: (N,) bool, True where the classifier is fooled.
    """

    indices: Tensor
    x_adv: Tensor
    success: Tensor


def collect_adversarial(ctx: EvalContext, attack: Attack, indices: Tensor, stream: str) -> AdversarialSet:
    """Run `attack` at `ctx.threat` on the given points of `ctx.data` and keep every example."""
    xs, successes = [], []
    for batch in ctx.batches(indices, attack.name, replicated=True):
        result = attack(ctx.model, batch.x, batch.y, ctx.threat, generator=batch.generator(stream))
        xs.append(result.x_adv.detach())
        successes.append(result.success.cpu())
    empty = torch.empty(0, *ctx.data.shape, device=ctx.device, dtype=ctx.dtype)
    return AdversarialSet(indices, torch.cat(xs) if xs else empty,
                          torch.cat(successes) if successes else torch.zeros(0, dtype=torch.bool))


def detection_stage(
    ctx: EvalContext,
    adversarial: Mapping[str, AdversarialSet] | None = None,
    *,
    fpr: float = 0.05,
    detectors: Sequence[str | Detector] = DEFAULT_DETECTORS,
    calibration: ImageSet | None = None,
    attacks: Sequence[Attack] | None = None,
    adaptive_steps: int = 100,
    adaptive_limit: int | None = 500,
    stream: str = "detection",
) -> dict[str, Any]:
    """Calibrate each detector at `fpr`, rate it on each attack, and attack it adaptively.

    Thresholds come from `calibration` (clean images, e.g. a training split) with the conformal
    correction of `bastion.detect.calibrate`; without it, a seeded half of `ctx.data` calibrates
    and the other half is held out. The clean false-positive rate is measured on the held-out
    points, the detection rate on each attack's successful examples, and `DetectorAwarePGD`
    (Carlini & Wagner 2017) attacks classifier and detector together on up to `adaptive_limit`
    held-out points the model classifies correctly.

    Args:
        ctx: The evaluation context (model, data, threat model; `ctx.correct` when set).
        adversarial: By attack name, adversarial examples already found (e.g. collected by the
            cascade); None runs `attacks` on the held-out correct points here.
        fpr: Target false-positive rate in (0, 1).
        detectors: Detector names (any of `DETECTORS.names()`) or objects.
        calibration: Clean calibration images; None splits `ctx.data`.
        attacks: Attacks run when `adversarial` is None; None gives PGD with its defaults.
        adaptive_steps: Steps of the adaptive attack; 0 skips it.
        adaptive_limit: Most points the adaptive attack runs on (it is the slow part); None for all.
        stream: Prefix of the stage's generator streams (`ctx.generator`): one per attack and detector.

    Returns:
        A JSON-ready dict: `settings`, `detectors` (by name: threshold, calibration and held-out
        clean FPR, `attacks` with each attack's detection and evasion rates, `adaptive`),
        `warnings` and `seconds`.
    """
    start = time.perf_counter()
    n = len(ctx.data)
    if calibration is not None:
        x_cal, held_out = images_of(calibration, ctx), torch.arange(n)
    else:
        order = torch.randperm(n, generator=ctx.generator(f"{stream}/split"))
        cal_idx, held_out = order[: n // 2].sort().values, order[n // 2 :].sort().values
        x_cal = clean_images(ctx, cal_idx)
    chosen = [make_detector(d) if isinstance(d, str) else d for d in detectors]
    calibrated = [calibrate(d, ctx.model, x_cal, fpr, batch_size=ctx.batch_size) for d in chosen]
    correct = correct_mask(ctx)
    targets = held_out[correct[held_out]]
    if adversarial is None:
        run = list(attacks) if attacks is not None else [PGD()]
        adversarial = {a.name: collect_adversarial(ctx, a, targets, f"{stream}/{a.name}") for a in run}
    rates = detection_rates(ctx.model, calibrated, clean_images(ctx, held_out), adversarial, batch_size=ctx.batch_size)
    adaptive_points = targets[:adaptive_limit] if adaptive_limit is not None else targets
    section: dict[str, Any] = {"detectors": {}, "warnings": []}
    for guard, rated in zip(calibrated, rates.detectors, strict=True):
        entry = rated.to_dict()
        if adaptive_steps > 0:
            stream_name = f"{stream}/adaptive/{guard.name}"
            entry["adaptive"] = adaptive_row(ctx, guard, adaptive_points, adaptive_steps, stream_name)
            section["warnings"] += adaptive_warnings(guard.name, entry)
        section["detectors"][guard.name] = entry
    section["settings"] = {
        "fpr": fpr, "threat": ctx.threat.describe(), "norm": ctx.threat.norm.name, "eps": ctx.threat.eps,
        "calibration": calibration.name if calibration is not None else f"half of {ctx.data.name}",
        "n_calibration": len(x_cal), "n_held_out": len(held_out), "seed": ctx.seed,
        "attacks": list(adversarial), "adaptive_steps": adaptive_steps, "adaptive_points": len(adaptive_points),
        "threshold_rule": "conformal: s_(ceil((n+1)(1-fpr))) of the calibration scores; flag score > threshold",
    }
    section["warnings"] += fpr_warnings(section)
    section["seconds"] = time.perf_counter() - start
    return section
