"""A test martingale that stays quick to detect a change after a long stretch of clean traffic.

A bet started at the first input loses wealth on every clean input (the price of betting), so after
50,000 clean inputs it needs thousands of shifted ones to reach an alarm. Here copies of the same
bets are started afresh every `every` inputs: copy j, started at input j * every (its wealth is 1
before), gets the weight w_j = 1 / ((j + 1)(j + 2)), which sums to 1 over j >= 0. Each copy is a
test martingale, so the mixture

    M_t = sum_j w_j M_t^(j)       (copies not started yet count as 1)                           (1)

is one too, and Ville's inequality still bounds a false alarm over any horizon by 1 / threshold.
A change after t clean inputs meets a copy started at most `every` inputs before it, at the price
of log(1 / w_j) ~ 2 log(t / every) nats instead of the decay of a copy started at 0 (the idea of
the Shiryaev-Roberts and CUSUM restarts in Vovk et al.'s conformal change-point detection, COPA
2021, arXiv:2102.10439, kept valid by fixed weights). Only the `keep` copies with the most weighted
wealth are kept: dropping a copy only lowers (1), so the bound holds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RestartedMixture"]


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return np.asarray((top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis))


class RestartedMixture:
    """The mixture (1) of K weighted bets, restarted every `every` inputs.

    Args:
        weights: (K,) the bets' weights within one copy, nonnegative, summing to 1.
        every: Inputs between two starts.
        keep: Most copies kept.
    """

    def __init__(self, weights: np.ndarray, every: int = 500, keep: int = 16) -> None:
        self.log_weights = np.log(np.asarray(weights, dtype=np.float64))
        self.every, self.keep = every, keep
        self.seen = 0
        self.started = 0                                       # copies started so far (j = 0 .. started - 1)
        self.copy_log_weight = np.zeros(0)                     # log w_j of the copies kept
        self.wealth = np.zeros((0, len(self.log_weights)))     # their bets' log wealth

    def update(self, log_factors: np.ndarray) -> np.ndarray:
        """Log M_t after each of T inputs, given each bet's log factor (T, K) on them."""
        out = []
        done = 0
        while done < len(log_factors):
            if self.seen % self.every == 0:  # a copy starts with this input
                j = self.started
                self.started += 1
                self.copy_log_weight = np.append(self.copy_log_weight, -np.log((j + 1.0) * (j + 2.0)))
                self.wealth = np.vstack([self.wealth, np.zeros((1, len(self.log_weights)))])
            size = min(len(log_factors) - done, self.every - self.seen % self.every)
            paths = self.wealth[:, None, :] + np.cumsum(log_factors[done:done + size], axis=0)[None]  # (S, T, K)
            copies = _logsumexp(paths + self.log_weights, axis=2) + self.copy_log_weight[:, None]      # (S, T)
            unstarted = np.full((1, size), -np.log(self.started + 1.0))  # sum of w_j over j >= started
            out.append(_logsumexp(np.concatenate([copies, unstarted]), axis=0))
            self.wealth = paths[:, -1, :]
            self.seen += size
            done += size
            if len(self.wealth) > self.keep:
                worth = _logsumexp(self.wealth + self.log_weights, axis=1) + self.copy_log_weight
                kept = np.sort(np.argsort(worth)[-self.keep:])
                self.copy_log_weight, self.wealth = self.copy_log_weight[kept], self.wealth[kept]
        return np.concatenate(out)

    def best_bets(self) -> np.ndarray:
        """(K,) the bets' log wealth in the copy of most weighted wealth (to name what drove an alarm)."""
        worth = _logsumexp(self.wealth + self.log_weights, axis=1) + self.copy_log_weight
        return np.asarray(self.wealth[int(np.argmax(worth))])
