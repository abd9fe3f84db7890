"""Sequential certification: each point draws noise in growing batches until its radii are decided.

Voracek & Hein, "Treatment of Statistical Estimation Problems in Randomized Smoothing for
Adversarial Robustness" (NeurIPS 2024, arXiv:2406.17830), section 4: deciding "is g robust at
radius r" with a confidence sequence needs on the order of log(1/alpha) / KL(pA || q(r)) samples,
a few hundred for a point far from the threshold q(r) = Phi(r / sigma), where Cohen et al.'s
CERTIFY spends a fixed n (10,000 to 100,000) on every point.

Procedure, per point (`certify_sequential`):
1. Selection, as in CERTIFY (Cohen et al., ICML 2019, arXiv:1902.02918): the top class c of n0
   noise samples. These samples are not used again.
2. Estimation: fresh samples in rounds of geometrically growing size (`first`, then x`growth`);
   after each round the tests of `bastion.certify.decisions.RadiusTests` read the count of c.
3. The point stops when every radius is certified, refuted, or out of reach of the `budget`
   (judged from an optimistic estimate of pA), or when the budget is spent.

Guarantee: with probability at least 1 - alpha over the noise, every radius reported as certified
is one at which the smoothed classifier g predicts c within that L2 distance (see
`bastion.certify.decisions`: one test error at a radius fixed by pA is needed, and equation (1) of
`bastion.certify.confseq` bounds it at every stopping time).

Each round's size depends only on the round's number, and point b draws from its own generator,
so a point's samples, and its certificate, do not depend on which other points share its batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bastion.certify.decisions import RadiusTests
from bastion.certify.sound import slack
from bastion.certify.votes import count_votes

__all__ = ["SequentialCertificate", "certify_sequential", "round_sizes"]

ABSTAIN = -1


@dataclass(frozen=True)
class SequentialCertificate:
    """A point's sequential certificate.

    Attributes:
        prediction: The certified class, or -1 (abstain) when not even radius 0 (pA > 1/2) was shown.
        radius: The largest radius of the grid certified (0 when only the prediction is).
        decisions: Each requested radius ("0.5") -> "certified", "refuted" (pA < q(r) shown),
            "budget" (not decidable within the budget, or above a radius that was not certified).
        top: The class the selection samples chose.
        count: Votes for `top` among the estimation samples.
        n: Estimation samples drawn.
        samples: Base-model forward samples in all, selection included (n0 + n).
    """

    prediction: int
    radius: float
    decisions: dict[str, str]
    top: int
    count: int
    n: int
    samples: int


def round_sizes(first: int, growth: float, budget: int) -> list[int]:
    """Cumulative estimation samples after each round: first, then x growth (rounded up), capped by the budget."""
    sizes, total = [], first
    while True:
        sizes.append(min(total, budget))
        if total >= budget:
            return sizes
        total = max(total + 1, math.ceil(total * growth))


def certify_sequential(
    base: nn.Module,
    x: Tensor,
    *,
    num_classes: int,
    sigma: float,
    radii: Sequence[float],
    n0: int,
    budget: int,
    alpha: float,
    batch_size: int,
    generators: Sequence[torch.Generator | None],
    first: int = 64,
    growth: float = 1.1,
    sound: bool = False,
) -> list[SequentialCertificate]:
    """Decide, for each image of x (B, C, H, W), at which of `radii` the smoothed classifier is robust.

    Guarantee (per image): with probability at least 1 - alpha, the smoothed classifier predicts
    `prediction` at every point within L2 distance `radius` (and at each radius marked certified).

    Args:
        base: The base classifier, (B, C, H, W) -> (B, num_classes) logits.
        x: Images (B, C, H, W).
        num_classes: Number of classes.
        sigma: Noise standard deviation, > 0.
        radii: The radii to decide (radius 0, the prediction itself, is always decided).
        n0: Selection samples per image.
        budget: Most estimation samples per image.
        alpha: Error probability in (0, 1).
        batch_size: Samples per forward pass.
        generators: One per image; the selection draws come first, then the rounds in order.
        first: Estimation samples of the first round.
        growth: Factor by which each round grows the samples drawn so far.
        sound: Sample soundly in floating point (`bastion.certify.sound`); the tests' thresholds
            rise by the rounding slack.
    """
    selection = count_votes(base, x, n0, sigma, num_classes, batch_size=batch_size, generators=generators,
                            sound=sound)
    tops = selection.argmax(1)
    tests = RadiusTests(radii, sigma, alpha, len(x), budget, margin=slack(x, sigma) if sound else 0.0)
    k = np.zeros(len(x), dtype=np.int64)
    n = np.zeros(len(x), dtype=np.int64)
    for total in round_sizes(first, growth, budget):
        rows = np.nonzero(tests.open() & (n < total))[0]
        if len(rows) == 0:
            break
        step = total - int(n[rows[0]])  # every open point has drawn the same rounds
        index = torch.as_tensor(rows, device=x.device)
        counts = count_votes(base, x[index], step, sigma, num_classes, batch_size=batch_size,
                             generators=[generators[int(i)] for i in rows], sound=sound)
        k[rows] += counts.gather(1, tops.to(counts.device)[index.to(counts.device), None]).squeeze(1).cpu().numpy()
        n[rows] = total
        tests.update(rows, k[rows], n[rows])
    prefix = tests.certified_prefix()
    out = []
    for i, top in enumerate(tops.tolist()):
        shown = int(prefix[i])
        out.append(SequentialCertificate(
            prediction=int(top) if shown else ABSTAIN, radius=tests.radii[shown - 1] if shown else 0.0,
            decisions=tests.decisions(i, radii, shown), top=int(top), count=int(k[i]), n=int(n[i]),
            samples=n0 + int(n[i])))
    return out
