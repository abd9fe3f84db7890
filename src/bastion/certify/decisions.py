"""Deciding "robust at radius r" for many radii at once from a running count, with anytime-valid tests.

Voracek & Hein (NeurIPS 2024, arXiv:2406.17830), section 4: the question a certified-accuracy table
asks of a point is not "what is its radius" but "is it robust at r" for a few radii r, and a
confidence sequence answers it with a sample size that adapts to how far pA lies from the
threshold q(r) = Phi(r / sigma). `RadiusTests` holds one pair of tests per radius (see
`bastion.certify.confseq`) and the state of a batch of points; it never draws samples itself.

Soundness with several radii and no union bound. The radii are sorted, radius 0 (q = 1/2, the
smoothed classifier's prediction itself) is always the first, and a point counts as certified at
the radii of the longest prefix whose tests have all crossed 1/alpha. A false certificate at any
radius then implies that the test of j* = min{j : q_j >= pA}, a radius fixed by pA alone, crossed
although its null (p <= q_j*) holds: by Ville's inequality that has probability at most alpha.
Refutations (the mirror tests) and budget stops only decide when to stop sampling; they can cost
certificates, never soundness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from bastion.certify.confseq import log_evalue_above, log_evalue_below, samples_to_certify, threshold

__all__ = ["BUDGET", "CERTIFIED", "REFUTED", "UNDECIDED", "RadiusTests"]

UNDECIDED, CERTIFIED, REFUTED, BUDGET = 0, 1, 2, 3
NAMES = {UNDECIDED: "undecided", CERTIFIED: "certified", REFUTED: "refuted", BUDGET: "budget"}


class RadiusTests:
    """The certify/refute tests of every radius for a batch of points, updated from running counts.

    Args:
        radii: The radii to decide (any order; 0 is added).
        sigma: Noise standard deviation of the smoothing, > 0.
        alpha: Error probability: a point is falsely certified at some radius with probability <= alpha.
        points: Number of points in the batch.
        budget: Estimation samples a point may draw (selection not included).
        optimism: Standard errors added to the running estimate of pA when judging whether a radius
            could still be certified within `budget` (a stopping heuristic, not part of the guarantee);
            None never stops a point before its budget on that ground.
        margin: Added to every threshold q(r) (the floating-point slack of sound sampling, see
            `bastion.certify.sound`): a count whose rate may lie `margin` off pA certifies only above q + margin.
    """

    def __init__(self, radii: Sequence[float], sigma: float, alpha: float, points: int, budget: int,
                 optimism: float | None = 1.0, margin: float = 0.0) -> None:
        self.radii = sorted({0.0, *(float(r) for r in radii)})
        self.thresholds = [(min(q + margin, 1.0), max(rest - margin, 1e-300))
                           for q, rest in (threshold(r, sigma) for r in self.radii)]
        self.log_level = math.log(1.0 / alpha)
        self.alpha, self.budget, self.optimism = alpha, budget, optimism
        self.status = np.full((points, len(self.radii)), UNDECIDED, dtype=np.int8)

    def update(self, rows: NDArray[np.int64], k: NDArray[np.int64], n: NDArray[np.int64]) -> None:
        """Read the counts (k successes of n draws) of the points `rows` and decide what they allow."""
        status = self.status[rows]
        for j, (q, rest) in enumerate(self.thresholds):
            open_ = status[:, j] == UNDECIDED
            if not open_.any():
                continue
            kj, nj = k[open_], n[open_]
            decided = np.where(log_evalue_above(kj, nj, q, rest) >= self.log_level, CERTIFIED,
                               np.where(log_evalue_below(kj, nj, q, rest) >= self.log_level, REFUTED, UNDECIDED))
            status[open_, j] = decided
        # A radius above a refuted or hopeless one cannot join the certified prefix: no need to decide it.
        below = np.logical_or.accumulate(np.isin(status, (REFUTED, BUDGET)), axis=1)
        blocked = np.zeros_like(below)
        blocked[:, 1:] = below[:, :-1]
        status[blocked & (status == UNDECIDED)] = BUDGET
        self._stop_hopeless(status, k, n)
        self.status[rows] = status

    def _stop_hopeless(self, status: NDArray[np.int8], k: NDArray[np.int64], n: NDArray[np.int64]) -> None:
        """Mark BUDGET the open radii that even an optimistic pA could not certify within the budget."""
        if self.optimism is None:
            return
        for i in np.nonzero((status == UNDECIDED).any(axis=1))[0]:
            p_hat = k[i] / n[i]
            optimistic = min(1.0, p_hat + self.optimism * math.sqrt(p_hat * (1 - p_hat) / n[i]) + 1.0 / n[i])
            for j in np.nonzero(status[i] == UNDECIDED)[0]:
                q, rest = self.thresholds[j]
                if samples_to_certify(optimistic, q, rest, self.alpha, int(n[i]) + 1, self.budget) is None:
                    status[i, j:] = np.where(status[i, j:] == UNDECIDED, BUDGET, status[i, j:])
                    break

    def open(self) -> NDArray[np.bool_]:
        """Which points still have a radius worth sampling for."""
        return np.asarray((self.status == UNDECIDED).any(axis=1))

    def certified_prefix(self) -> NDArray[np.int64]:
        """Per point, how many of the sorted radii (0 first) are certified: the longest all-certified prefix."""
        certified = self.status == CERTIFIED
        return np.asarray(np.cumprod(certified, axis=1).sum(axis=1), dtype=np.int64)

    def decisions(self, point: int, radii: Sequence[float], prefix: int | None = None) -> dict[str, str]:
        """The decision of each of `radii` for one point, by its radius written as text ("0.5").

        `prefix` is the point's entry of `certified_prefix()`, when the caller has it already.
        """
        prefix = int(self.certified_prefix()[point]) if prefix is None else prefix
        out = {}
        for r in radii:
            j = self.radii.index(float(r))
            code = int(self.status[point, j])
            out[f"{float(r):g}"] = "certified" if j < prefix else NAMES[code if code != CERTIFIED else BUDGET]
        return out
