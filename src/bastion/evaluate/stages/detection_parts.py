"""Helpers of the detection stage: clean images from the context, and the adaptive attack's row."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bastion.data import ImageSet
from bastion.detect.adaptive import DetectorAwarePGD
from bastion.detect.calibrate import CalibratedDetector
from bastion.detect.rates import guard_outcome
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.passes import attack_mode

__all__ = ["adaptive_row", "adaptive_warnings", "clean_images", "correct_mask", "images_of"]


def clean_images(ctx: EvalContext, indices: Tensor) -> Tensor:
    """The images of `ctx.data` at `indices`, on the model's device and dtype."""
    if not len(indices):
        return torch.empty(0)
    return torch.cat([batch.x for batch in ctx.batches(indices, "clean", replicated=True)])


def correct_mask(ctx: EvalContext) -> Tensor:
    """`ctx.correct`, computed here when no clean stage ran before."""
    if len(ctx.correct) == len(ctx.data):
        return ctx.correct
    correct = torch.zeros(len(ctx.data), dtype=torch.bool)
    with attack_mode(ctx.model), torch.no_grad():
        for batch in ctx.batches(torch.arange(len(ctx.data)), "clean", replicated=True):
            correct[batch.indices] = (ctx.model(batch.x).argmax(1) == batch.y).cpu()
    return correct


def images_of(calibration: ImageSet, ctx: EvalContext) -> Tensor:
    """All images of a calibration set, on the model's device and dtype; shaped like `ctx.data`'s."""
    if calibration.shape != ctx.data.shape:
        raise InputError(f"calibration images are shaped {calibration.shape}, the evaluation data {ctx.data.shape}")
    chunks = [x for _, x, _ in calibration.batches(ctx.batch_size, device=ctx.device, dtype=ctx.dtype)]
    return torch.cat(chunks)


def adaptive_row(
    ctx: EvalContext, guard: CalibratedDetector, indices: Tensor, steps: int, stream: str
) -> dict[str, Any]:
    """Run `DetectorAwarePGD` against `guard` and the classifier; judge the examples against both."""
    attack = DetectorAwarePGD(guard, steps=steps)
    misclassified, flagged = [], []
    for batch in ctx.batches(indices, f"adaptive {guard.name}", replicated=True):
        x_adv = attack(ctx.model, batch.x, batch.y, ctx.threat, generator=batch.generator(stream)).x_adv
        outcome = guard_outcome(ctx.model, [guard], x_adv, batch.y, batch_size=ctx.batch_size)
        misclassified.append(outcome.misclassified.cpu())
        flagged.append(outcome.flagged.cpu())
    mis = torch.cat(misclassified) if misclassified else torch.zeros(0, dtype=torch.bool)
    flag = torch.cat(flagged) if flagged else torch.zeros(0, dtype=torch.bool)
    n, n_success, n_detected = len(mis), int(mis.sum()), int((mis & flag).sum())
    return {"attack": attack.name, "settings": {k: v for k, v in attack.settings().items() if k != "detectors"},
            "n_attacked": n, "n_success": n_success, "n_detected": n_detected,
            "rate": n_detected / n_success if n_success else None,
            "evasion_rate": (n_success - n_detected) / n if n else None}


def adaptive_warnings(name: str, entry: dict[str, Any]) -> list[str]:
    """Say so when the adaptive attack gets through a detector that looked strong against plain attacks."""
    adaptive = entry["adaptive"]
    plain = [r["rate"] for r in entry["attacks"].values() if r["rate"] is not None]
    if not plain or adaptive["rate"] is None or adaptive["evasion_rate"] is None:
        return []
    best = max(plain)
    if best - adaptive["rate"] >= 0.2 and adaptive["evasion_rate"] > 0:
        return [f"{name}: detects {best:.0%} of the plain attack's examples but only {adaptive['rate']:.0%} of the "
                f"adaptive attack's ({adaptive['evasion_rate']:.0%} of the points fool the classifier undetected): "
                "its rate against plain attacks overstates what it stops"]
    return []
