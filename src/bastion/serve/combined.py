"""One conformal p-value for all of the guard's signals: full-conformal minimum rank.

With m signals (detector scores, probes), flagging when ANY per-signal p-value is at most fpr / m
(Bonferroni) keeps the clean flag rate under fpr whatever their dependence, but spends the rate
conservatively when the signals agree (margin and entropy nearly always do). Instead the guard
turns the m scores into one statistic, the smallest rank among the signals, and calibrates it
exactly by full conformal prediction (Vovk, Gammerman & Shafer, "Algorithmic Learning in a Random
World", 2005, ch. 2; Angelopoulos & Bates 2021, arXiv:2107.07511, sec. 4): for a new input x and
calibration inputs c_1..c_n, in the augmented set {c_1..c_n, x}

    R_j(z) = #{z' in the augmented set : s_j(z') >= s_j(z)},    T(z) = min_j R_j(z)             (1)

(the rank of z from the top on signal j; T small = extreme on some signal), and

    p(x) = #{z in the augmented set : T(z) <= T(x)} / (n + 1).                                  (2)

T is a symmetric function of the augmented set, so when x is exchangeable with the calibration
inputs the rank of T(x) is uniform over the n + 1 positions (ties counted against x) and
P(p(x) <= a) <= a: flagging at p <= fpr flags at most a share fpr of clean inputs, with the full
rate spent. R_j of a calibration point moves by at most one when x joins, so (1) costs O(n m) per
input from ranks computed once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from bastion.errors import InputError

__all__ = ["MinRankCombiner"]


class MinRankCombiner:
    """Full-conformal p-values (2) of the minimum rank (1) over signals.

    Args:
        scores: (n, m) clean calibration scores, one column per signal, higher = more suspicious.
    """

    def __init__(self, scores: Tensor) -> None:
        values = scores.detach().double().cpu()
        if values.dim() != 2 or len(values) == 0 or bool(torch.isnan(values).any()):
            raise InputError("the combined p-value needs an (n, m) matrix of calibration scores without NaN")
        self.scores = values
        # rank[i, j] = #{k : s_j(c_k) >= s_j(c_i)}, from the top, counting c_i itself.
        order = values.sort(dim=0).values
        self.ranks = len(values) - torch.searchsorted(order.T.contiguous(), values.T.contiguous(), side="left").T

    @property
    def n(self) -> int:
        """Calibration points."""
        return int(len(self.scores))

    def signal_level(self, fpr: float) -> float:
        """The per-signal p-value level that the combined flag at `fpr` amounts to, in [1/(n+1), 1).

        Up to the one-rank move of each calibration point when x joins, p(x) <= fpr exactly when some
        signal's rank R_j(x) is at most tau, the largest t with #{i : T(c_i) <= t} <= fpr (n + 1) - 1:
        each signal flagged at p_j <= tau / (n + 1). Adaptive attacks aim at these per-signal thresholds.
        """
        t = self.ranks.amin(dim=1).sort().values
        k = math.floor(fpr * (self.n + 1) + 1e-9) - 1
        tau = self.n if k >= self.n else (int(t[k]) - 1 if k >= 0 else 0)
        return max(tau, 1) / (self.n + 1.0)

    def p_values(self, scores: Tensor) -> Tensor:
        """(B,) combined p-values in [1/(n+1), 1] of new inputs' scores (B, m); NaN counts as most suspicious."""
        return self.all_p_values(scores)[1]

    def all_p_values(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        """Each signal's conformal p-value (1 + #{i : s_j(c_i) >= s_j(x)}) / (n + 1), (B, m), and the combined (B,).

        One pass over the calibration scores gives both (numpy: small arrays on the hot path).
        """
        s = scores.detach().double().cpu().numpy()
        s = np.where(np.isnan(s), np.inf, s)
        cal, ranks = self.scores.numpy(), self.ranks.numpy()
        above = s[:, None, :] >= cal[None]                             # (B, n, m): x at or above c_i on signal j
        r_x = 1 + (cal[None] >= s[:, None, :]).sum(axis=1)             # (B, m): R_j(x)
        t_cal = (ranks[None] + above).min(axis=2)                      # (B, n)
        combined = (1.0 + (t_cal <= r_x.min(axis=1)[:, None]).sum(axis=1)) / (self.n + 1.0)
        return torch.from_numpy(r_x / (self.n + 1.0)), torch.from_numpy(combined)
