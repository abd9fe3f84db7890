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
input from ranks computed once; better, with m_i = min_j R_j(c_i) computed once, T(c_i) in the
augmented set is m_i + 1 when x is at or above c_i on every signal j with R_j(c_i) = m_i, else m_i, so

    #{i : T(c_i) <= T(x)} = #{i : m_i < T(x)} + #{i : m_i = T(x), not bumped by x}               (3)

costs O(m log n) per input plus the few points with m_i = T(x).
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
        # For (3): each calibration point's smallest rank m_i, the signals that reach it, and the points by m_i.
        ranks = self.ranks.numpy()
        self._sorted_columns = order.T.contiguous().numpy()              # (m, n), each column ascending
        self._least = ranks.min(axis=1)                                  # (n,) m_i
        self._at_least = ranks == self._least[:, None]                   # (n, m): R_ij == m_i
        self._by_least = np.argsort(self._least, kind="stable")
        self._least_sorted = self._least[self._by_least]

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

        By (3), in O(m log n) per input plus the few calibration points whose least rank equals T(x).
        """
        s = scores.detach().double().cpu().numpy()
        s = np.where(np.isnan(s), np.inf, s)
        cal = self.scores.numpy()
        n = self.n
        below = np.stack([np.searchsorted(column, s[:, j], side="left")
                          for j, column in enumerate(self._sorted_columns)], axis=1)
        r_x = 1 + n - below                                            # (B, m): R_j(x)
        t_x = r_x.min(axis=1)
        lower = np.searchsorted(self._least_sorted, t_x, side="left")  # #{i : m_i < T(x)}
        upper = np.searchsorted(self._least_sorted, t_x, side="right")
        count = lower.astype(np.float64)
        for b in np.flatnonzero(upper > lower):
            tied = self._by_least[lower[b]:upper[b]]                   # m_i == T(x): counted unless bumped
            bumped = (~self._at_least[tied] | (s[b] >= cal[tied])).all(axis=1)
            count[b] += float((~bumped).sum())
        return torch.from_numpy(r_x / (n + 1.0)), torch.from_numpy((1.0 + count) / (n + 1.0))
