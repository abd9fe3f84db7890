"""The stages of the evaluation protocol: clean baseline, attacks, robustness curve, per class."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from bastion.attacks.base import Attack
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.minnorm import norm_profile
from bastion.evaluate.result import AttackRecord, ClassRecord, CleanRecord, CurvePoint
from bastion.models.checks import checked_logits
from bastion.passes import PassCount, attack_mode
from bastion.threat import ThreatModel

__all__ = ["attack_stage", "clean_stage", "curve_stage", "min_norm_stage", "per_class_stage"]


def clean_stage(ctx: EvalContext) -> CleanRecord:
    """Top-1 and top-5 accuracy without attack; sets `ctx.correct`, `ctx.robust`, `ctx.predictions`."""
    n = len(ctx.data)
    predictions = torch.empty(n, dtype=torch.long)
    top5 = torch.zeros(n, dtype=torch.bool)
    with attack_mode(ctx.model), torch.no_grad():
        for i, (indices, x, y) in enumerate(ctx.batches(torch.arange(n), "clean")):
            logits = checked_logits(ctx.model, x, ctx.data.num_classes)
            if i == 0:
                _check_outputs(ctx, x, logits)
            predictions[indices] = logits.argmax(1).cpu()
            k = min(5, logits.shape[1])
            top5[indices] = (logits.topk(k, dim=1).indices == y[:, None]).any(1).cpu()
    ctx.predictions = predictions
    ctx.correct = predictions == ctx.data.labels
    ctx.robust = ctx.correct.clone()
    return CleanRecord(top1=_mean(ctx.correct), top5=_mean(top5), n_correct=int(ctx.correct.sum()))


def _check_outputs(ctx: EvalContext, x: Tensor, logits: Tensor) -> None:
    """Warn about outputs that make gradient attacks unreliable (Carlini et al. 2019, arXiv:1902.06705)."""
    again = ctx.model(x)
    if not torch.allclose(logits, again, rtol=1e-4, atol=1e-5):
        ctx.warnings.append(
            "the model gives different outputs for identical inputs (a randomized defense?): single-run "
            "gradients mislead attacks; evaluate it with EOT and repeated predictions"
        )
    rows_sum_to_one = torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-3)
    if rows_sum_to_one and bool((logits >= 0).all()) and bool((logits <= 1).all()):
        ctx.warnings.append(
            "the model outputs look like probabilities, not logits: cross-entropy gradients saturate and "
            "attacks underestimate; return logits or use --loss cw"
        )


def attack_stage(
    ctx: EvalContext, attack: Attack, role: str, stream: int, *, model: nn.Module | None = None
) -> AttackRecord:
    """Run `attack` on the points still robust, and mark those it breaks (the cascade).

    `model` replaces `ctx.model` as what the attack sees (a BPDA or EOT view of it, whose
    predictions are the model's own); None attacks `ctx.model`.
    """
    targets = ctx.robust.nonzero().squeeze(1)
    generator = ctx.generator(stream)
    passes, fooled_total, start = PassCount(), 0, time.perf_counter()
    for indices, x, y in ctx.batches(targets, f"{attack.name} ({role})"):
        result = attack(ctx.model if model is None else model, x, y, ctx.threat, generator=generator)
        fooled = result.success.cpu()
        ctx.robust[indices[fooled]] = False
        ctx.keep_examples(indices, x, result.x_adv, y, result.predictions, fooled, attack.name)
        passes, fooled_total = passes + result.passes, fooled_total + int(fooled.sum())
    return AttackRecord(
        name=attack.name,
        role=role,
        settings=attack.settings(),
        norm=ctx.threat.norm.name,
        eps=ctx.threat.eps,
        attacked=int(targets.numel()),
        fooled=fooled_total,
        robust_accuracy=_mean(ctx.robust),
        passes=asdict(passes),
        seconds=time.perf_counter() - start,
    )


def curve_stage(
    ctx: EvalContext, attack: Attack, grid: list[float], stream: int, *, model: nn.Module | None = None
) -> list[CurvePoint]:
    """Robust accuracy at each eps of `grid`, attacked in increasing order (`model`: as in `attack_stage`).

    A point broken within a small ball stays broken in every larger one, so each radius attacks only
    the points that survived the previous radius, and at the threat model's eps the cascade's
    worst case is reused: the curve can only fall, and costs little where the model breaks early.
    """
    robust = ctx.correct.clone()
    points: list[CurvePoint] = []
    generator = ctx.generator(stream)
    for eps in sorted(grid):
        at_threat = math.isclose(eps, ctx.threat.eps, rel_tol=1e-9, abs_tol=1e-12)
        if at_threat or eps > ctx.threat.eps:
            robust &= ctx.robust
        if eps > 0 and not at_threat:
            threat = ThreatModel(ctx.threat.norm, eps, ctx.threat.bounds)
            for indices, x, y in ctx.batches(robust.nonzero().squeeze(1), f"curve eps={eps:.4g}"):
                result = attack(ctx.model if model is None else model, x, y, threat, generator=generator)
                robust[indices[result.success.cpu()]] = False
        points.append(CurvePoint(eps=eps, accuracy=_mean(robust)))
    return points


def per_class_stage(ctx: EvalContext, floor: float | None) -> tuple[list[ClassRecord], float]:
    """Clean and robust accuracy per class; classes under `floor` are flagged."""
    overall = _mean(ctx.robust)
    floor = overall / 2 if floor is None else floor
    records = []
    for label, name in enumerate(ctx.data.classes):
        members = ctx.data.labels == label
        n = int(members.sum())
        robust = _mean(ctx.robust[members]) if n else 0.0
        records.append(
            ClassRecord(
                label=label,
                name=str(name),
                n=n,
                clean_accuracy=_mean(ctx.correct[members]) if n else 0.0,
                robust_accuracy=robust,
                flagged=n > 0 and robust < floor,
            )
        )
    return records, floor


def _mean(mask: Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else 0.0


def min_norm_stage(ctx: EvalContext, attack: Attack, grid: list[float], stream: int) -> dict[str, Any]:
    """Run a minimal-norm attack with no radius bound on the correct points; profile the norms it finds."""
    if not attack.minimizes_norm:
        raise InputError(f"{attack.name} does not minimize the norm; use fab or cw")
    threat = ThreatModel.unbounded(ctx.threat.norm, ctx.data.shape, ctx.threat.bounds)
    norms = torch.zeros(len(ctx.data))
    fooled = torch.zeros(len(ctx.data), dtype=torch.bool)
    generator = ctx.generator(stream)
    start = time.perf_counter()
    for indices, x, y in ctx.batches(ctx.correct.nonzero().squeeze(1), attack.name):
        result = attack(ctx.model, x, y, threat, generator=generator)
        norms[indices], fooled[indices] = result.norms.float().cpu(), result.success.cpu()
    profile = norm_profile(norms, fooled, ctx.correct, grid)
    return {"attack": attack.name, "settings": attack.settings(), "seconds": time.perf_counter() - start, **profile}
