"""A global sample allocation for radius mode: the fewest samples for a given *mean* radius decline.

Chen et al., "Input-Specific Robustness Certification for Randomized Smoothing" (AAAI 2022,
arXiv:2112.12084), ISS, plan each point's sample size from a pilot estimate of pA so that its
expected CERTIFY radius lies within a decline of the radius at the full budget N. A cap per point
spends most of the samples on the points whose radius grows with n longest (a unanimous point's
radius, sigma * Phi^-1(alpha^(1/n)), never stops growing), while points with pA < 1 reach their
radius at a few thousand samples. Here the cap is on the mean instead: minimise the total

    sum_i n_i  subject to  (1 / m) * sum_i [R_i(N) - R_i(n_i)] <= decline,

where R_i(n) is point i's expected radius at n estimation samples (`expected_radius` at its
planning pA) and the mean runs over the m points the plan expects to certify (R_i(N) > 0; an
expected abstention has nothing to lose). This is a knapsack with a convex relaxation: on each
point's lower convex hull of (n, decline) the Lagrangian solution takes hull segments in the order
of their radius gained per sample, the largest first, until the mean decline is met (the greedy
marginal allocation); the last segment is cut at the first grid size that meets it. The segments'
order does not depend on `decline`, so a smaller decline gives every point at least as many samples.

The plan is a function of the pilots alone (ordered by the points' indices), so it is the same
whichever process computed which pilot, and in whatever order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bastion.certify.iss import expected_radius, planning_p

__all__ = ["Pilot", "allocate", "size_grid"]


@dataclass(frozen=True)
class Pilot:
    """A point's pilot: the class it selected and that class's votes, from samples never used to estimate.

    Attributes:
        index: The point's index in its data set (the plan's key and its order).
        top: The class the pilot selected.
        count: Votes for `top` among the pilot's samples.
        n: Pilot samples (all of them count in the point's cost).
    """

    index: int
    top: int
    count: int
    n: int


def size_grid(smallest: int, budget: int, num: int = 160) -> np.ndarray:
    """The sample sizes a plan chooses from: `num` geometric steps from `smallest` to `budget` (both included)."""
    if budget <= smallest:
        return np.array([budget], dtype=np.int64)
    return np.unique(np.geomspace(smallest, budget, num=num).round().astype(np.int64))


def _hull(n: np.ndarray, loss: np.ndarray) -> list[int]:
    """Positions of the lower convex hull of the points (n, loss), loss non-increasing in n."""
    hull: list[int] = []
    for j in range(len(n)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or above the chord from a to j: it is never the best size for any price per sample
            if (loss[b] - loss[a]) * (n[j] - n[a]) >= (loss[j] - loss[a]) * (n[b] - n[a]):
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def allocate(pilots: Iterable[Pilot], *, budget: int, alpha: float, sigma: float, decline: float,
             optimism: float = 1.0, smallest: int = 100) -> dict[int, int]:
    """Estimation samples per point (index -> n) minimising their sum under a mean expected radius decline.

    Args:
        pilots: Every point's pilot (each index once); their order does not matter.
        budget: The fixed-n procedure's n, the most a point may get and the reference radius's n.
        alpha: Error probability of the certificates.
        sigma: Noise standard deviation.
        decline: The largest mean, over the points the plan expects to certify, of the expected
            radius loss against n = `budget` (L2 units). A single point may lose more.
        optimism: Standard errors of the planning pA's upper bound (`bastion.certify.iss.planning_p`).
        smallest: The fewest estimation samples a point gets.
    """
    points = sorted(pilots, key=lambda p: p.index)
    if len({p.index for p in points}) != len(points):
        raise ValueError("each point needs exactly one pilot: an index appears twice")
    grid = size_grid(smallest, budget)
    sizes = grid.astype(np.float64)
    losses, hulls, counted = [], [], 0
    for p in points:
        radii = np.maximum.accumulate(expected_radius(planning_p(p.count, p.n, optimism), sizes, alpha, sigma))
        losses.append(radii[-1] - radii)
        hulls.append(_hull(sizes, losses[-1]) if radii[-1] > 0 else [0])
        counted += int(radii[-1] > 0)
    allowed = decline * max(counted, 1)
    chosen = [0] * len(points)
    total = float(sum(loss[0] for loss in losses))
    # every hull segment: (radius gained per sample, point, segment); the steepest are bought first
    segments = [((loss[h[s]] - loss[h[s + 1]]) / (sizes[h[s + 1]] - sizes[h[s]]), i, s)
                for i, (loss, h) in enumerate(zip(losses, hulls, strict=True)) for s in range(len(h) - 1)]
    segments.sort(key=lambda seg: (-seg[0], seg[1], seg[2]))
    for _, i, s in segments:
        if total <= allowed:
            break
        start, stop = hulls[i][s], hulls[i][s + 1]
        before = total - losses[i][start]
        # the first grid size on this segment that meets the constraint, else the segment's end
        meets = [j for j in range(start + 1, stop + 1) if before + losses[i][j] <= allowed]
        chosen[i] = meets[0] if meets else stop
        total = before + losses[i][chosen[i]]
    return {p.index: int(grid[j]) for p, j in zip(points, chosen, strict=True)}
