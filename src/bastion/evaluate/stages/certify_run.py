"""The certify stage's work: randomized smoothing next to the empirical attacks, as a JSON-ready section."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from bastion.attacks.smoothadv import SmoothAdv
from bastion.certify.dataset import certify_dataset
from bastion.certify.procedure import Procedure
from bastion.certify.summary import parse_radii, summarize
from bastion.certify.votes import count_votes, image_generator
from bastion.evaluate.context import EvalContext
from bastion.threat import ThreatModel

__all__ = ["certify_stage", "l2_radius_covering"]


def l2_radius_covering(threat: ThreatModel, shape: Sequence[int]) -> float:
    """The L2 radius whose ball contains the threat model's ball: eps for L2, eps * sqrt(d) for Linf."""
    return threat.eps if threat.norm.name == "l2" else threat.eps * math.sqrt(math.prod(shape))


def certify_stage(
    ctx: EvalContext,
    *,
    sigma: float,
    n0: int | None = None,
    n: int | None = None,
    alpha: float = 0.001,
    sequential: bool = False,
    batch_size: int = 1000,
    radii: Sequence[float] | str | None = None,
    attack_steps: int = 10,
    attack_samples: int = 8,
    attack_votes: int = 1000,
    stream: str = "smoothadv",
) -> dict[str, Any]:
    """Certify every point by randomized smoothing and set it beside the empirical numbers.

    CERTIFY (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918) on each point of `ctx.data`;
    guarantee: with probability at least 1 - alpha per point, a point counted as certified at radius
    r keeps the smoothed classifier's (correct) prediction within L2 distance r. The certified
    accuracy at the threat model (the L2 ball containing it, see `l2_radius_covering`) is a lower
    bound on the smoothed classifier's robust accuracy. With `attack_steps` > 0 and an L2 threat
    model, SmoothAdv (Salman et al., NeurIPS 2019, arXiv:1906.04584) attacks the smoothed classifier
    and its majority vote over `attack_votes` samples is read on the result: an empirical upper
    bound, which should not fall below the certified accuracy (a warning says so if it does).

    Args:
        ctx: The evaluation context; `ctx.correct` and `ctx.robust` (the base model's clean and
            empirical results) are quoted when earlier stages set them.
        sigma: Noise standard deviation, > 0.
        n0: Selection samples per point (default 100; 16 when sequential).
        n: Estimation samples per point (default 10,000), or the most a point may draw when
            sequential (default 30,000).
        alpha: Error probability in (0, 1).
        sequential: Decide each radius of the table, and the threat model's, with anytime-valid
            tests (Voracek & Hein, NeurIPS 2024, arXiv:2406.17830) instead of a fixed n.
        batch_size: Noise samples per forward pass.
        radii: Radii of the certified-accuracy table (a list or "0,0.5,1"); None gives 0..2 by 0.5.
        attack_steps: SmoothAdv steps; 0 skips the attack.
        attack_samples: Noise samples SmoothAdv averages per step.
        attack_votes: Samples of the majority vote read on SmoothAdv's points.
        stream: Generator stream of the attack (`ctx.generator(stream)`).

    Returns:
        A JSON-ready dict: `settings`, `summary` (see `summarize`), `rows` (one per point),
        `threat_radius`, `certified_at_threat`, `comparison` (certified vs empirical, for the
        report), `warnings` and `seconds`.
    """
    start = time.perf_counter()
    grid = parse_radii(radii)
    radius = l2_radius_covering(ctx.threat, ctx.data.shape)
    procedure = (Procedure.build(sequential=True, radii=sorted({*grid, radius}), n0=n0, n=n, alpha=alpha)
                 if sequential else Procedure(n0=100 if n0 is None else n0, n=10_000 if n is None else n, alpha=alpha))
    rows = certify_dataset(ctx.model, ctx.data, sigma=sigma, procedure=procedure, batch_size=batch_size,
                           seed=ctx.seed, progress=ctx.progress)
    certified = [bool(r["correct"]) and r["radius"] >= radius for r in rows]
    at_threat = sum(certified) / len(rows) if rows else 0.0
    kind = "" if ctx.threat.norm.name == "l2" else f" (the L2 ball of radius {radius:.3g} containing it)"
    comparison = [{"what": f"smoothed classifier: certified at the threat model{kind}", "accuracy": at_threat}]
    if len(ctx.correct) == len(rows) and rows:
        comparison += [{"what": "base model: clean accuracy", "accuracy": float(ctx.correct.float().mean())},
                       {"what": "base model: empirical robust accuracy (worst case over the attacks)",
                        "accuracy": float(ctx.robust.float().mean())}]
    warnings: list[str] = []
    if attack_steps > 0 and ctx.threat.norm.name == "l2" and rows:
        empirical = _smoothadv_accuracy(ctx, rows, sigma, attack_steps, attack_samples, attack_votes, batch_size,
                                        stream)
        comparison.append({"what": f"smoothed classifier: empirical robust accuracy under SmoothAdv "
                                   f"({attack_steps} steps, {attack_samples} samples; majority of {attack_votes} "
                                   "votes)", "accuracy": empirical})
        if empirical < at_threat:
            warnings.append(f"SmoothAdv leaves {empirical:.1%} robust, below the {at_threat:.1%} certified at the "
                            "threat model: Monte Carlo error on points near the certified radius, or a bug")
    settings = {"sigma": sigma, **procedure.settings(), "batch_size": batch_size, "radii": grid,
                "seed": ctx.seed, "attack_steps": attack_steps, "attack_samples": attack_samples,
                "attack_votes": attack_votes}
    summary = summarize(rows, grid, sigma=sigma, n=procedure.n, alpha=alpha, fixed_samples=procedure.fixed_samples)
    return {"settings": settings, "summary": summary, "rows": rows,
            "threat_radius": radius, "certified_at_threat": at_threat, "comparison": comparison,
            "warnings": warnings, "seconds": time.perf_counter() - start}


def _smoothadv_accuracy(ctx: EvalContext, rows: list[dict[str, Any]], sigma: float, steps: int, samples: int,
                        votes: int, batch_size: int, stream: str) -> float:
    """Share of points whose smoothed majority vote stays correct after SmoothAdv (points g gets wrong count 0)."""
    attack = SmoothAdv(sigma=sigma, n_samples=samples, steps=steps)
    targets = torch.tensor([i for i, r in enumerate(rows) if r["correct"]], dtype=torch.long)
    robust = torch.zeros(len(rows), dtype=torch.bool)
    shard = ctx.batches(targets, "smoothadv")
    for batch in shard:
        x_adv = attack(ctx.model, batch.x, batch.y, ctx.threat, generator=batch.generator(stream)).x_adv
        generators = [image_generator(ctx.seed + 1, int(i), ctx.device) for i in batch.indices]
        counts = count_votes(ctx.model, x_adv, votes, sigma, ctx.data.num_classes, batch_size=batch_size,
                             generators=generators)
        robust[batch.indices] = (counts.argmax(1) == batch.y).cpu()
    shard.merge(robust)
    return int(robust.sum()) / len(rows)
