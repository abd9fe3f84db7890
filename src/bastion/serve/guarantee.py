"""An anytime-valid monitor of the guard's guarantee: is the traffic still exchangeable with the calibration set?

The guard flags an input when its conformal p-value against the calibration set is at most a level.
That promises a clean flag rate of at most the level only while the traffic and the calibration set
are exchangeable. This module tests that hypothesis on every input, for as long as the server runs,
with a conformal test martingale (Vovk, Nouretdinov & Gammerman, "Testing exchangeability on-line",
ICML 2003; Vovk et al., "Retrain or not retrain: conformal test martingales for change-point
detection", COPA 2021, arXiv:2102.10439).

Construction. For one signal with n calibration scores, the t-th input's conformal p-value puts its
score in one of the n + 1 intervals between the sorted calibration scores: j_t, the number of
calibration scores below it. Under exchangeability of the calibration set and the traffic, the
input's score is equally likely to fall in each of the n + t gaps between ALL the scores seen so
far (calibration and earlier traffic), so interval j holds 1 + c_j of them, c_j counting earlier
inputs in it (a Polya urn):

    P(j_t = j | j_1 .. j_{t-1}) = (1 + c_j) / (n + t).                                           (1)

The randomized predictive p-value u_t = (#gaps above j_t + U_t (1 + c_{j_t})) / (n + t), U_t
uniform, is therefore exactly uniform given the past, for every calibration set drawn like the
traffic: the u_t are i.i.d. U(0, 1) (for continuous scores; Vovk, Gammerman & Shafer, "Algorithmic
Learning in a Random World", 2005, ch. 7). This is the exact law of the stream against a FIXED
calibration set that Shaer, Bar, Prinster & Romano ("Testing for distribution shifts with
conditional conformal test martingales", 2026, arXiv:2602.13848) ask for: the guard's decisions
keep using the fixed calibration set; only the monitor's predictive law counts earlier traffic.
The guarantee is over the draw of the calibration set and the traffic, like the conformal flag
rate it protects.

Bets: for each signal, the threshold bets 1 + lam (1{u <= a} / a - 1) at each tested level a (the
flag level, the reject level, 0.1 and 0.25: excess p-values in the tail the flag rate is about);
each has conditional mean 1, so their average M_t is a test martingale, and Ville's inequality
(1939) bounds a false alarm at ANY time:

    P(exists t: M_t >= 1 / delta) <= delta.                                                       (2)

Linear bets 1 + lam (1 - 2u), on p-values running low anywhere, were tried and left out: on the
MNIST check they also broke the guarantee for benign shifts that keep the flag rate at its target
(blur, resizing, pixelation), while the threshold bets alone still break it for the shifts that
raise it (MNIST's writer order, brightness x0.6, noise). The bets are restarted every 500 inputs
with decreasing weights (`bastion.serve.restarts`), so a change after a long clean stretch is
caught about as fast as one at the start.

After an alarm the guarantee stays broken until the guard is recalibrated or the monitor reset. The
bets are one-sided: traffic more typical than the calibration set (larger p-values) keeps every
flag-rate promise and raises no alarm. `flag_rate_bound` reports, per signal, the
calibration-conditional bound on the clean flag rate at the flag level (Vovk, "Conditional validity
of inductive conformal predictors", ACML 2012, arXiv:1209.2673): the (1 - delta) quantile of
Beta(k, n + 1 - k), with k = floor(a (n + 1)).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta as beta_law

from bastion.errors import InputError
from bastion.serve.restarts import RestartedMixture

__all__ = ["GuaranteeMonitor", "GuaranteeState", "UrnPValues", "bet_log_factors", "level_bounds",
           "mixture_log_wealth"]

#: Bets of each family: small bets catch small excesses slowly, large ones large excesses fast.
LAMBDAS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7)


def level_bounds(n: int, levels: Sequence[float], delta: float) -> tuple[np.ndarray, np.ndarray]:
    """The index k = floor(a (n + 1)) of each level a and q_k, the (1 - delta) quantile of Beta(k, n + 1 - k).

    Levels below 1 / (n + 1) can never be reached by a p-value and are refused.
    """
    ks = np.floor(np.asarray(levels, dtype=np.float64) * (n + 1) + 1e-9).astype(np.int64)
    if (ks < 1).any() or (ks > n).any():
        raise InputError(f"a monitored level in {list(levels)} lies outside what {n} calibration points can test")
    q = beta_law.ppf(1.0 - delta, ks, n + 1 - ks)
    return ks, np.minimum(np.asarray(q, dtype=np.float64), 1.0)


class UrnPValues:
    """The predictive p-values u_t of (1) for D signals' streams, each against n calibration scores.

    Args:
        n: Calibration scores (the same calibration images for every signal).
        signals: D.
    """

    def __init__(self, n: int, signals: int = 1) -> None:
        self.n = n
        self.counts = np.zeros((signals, n + 1), dtype=np.int64)  # c_j per signal: earlier inputs in interval j
        self.seen = 0

    def update(self, below: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """u_t of a batch of inputs, in order, then count them.

        Args:
            below: (B,) or (B, D): each input's interval j_t in 0..n (calibration scores below its score).
            uniforms: the U_t that break ties inside an interval, shaped like `below`.

        Returns:
            u, shaped like `below`.
        """
        j = np.asarray(below, dtype=np.int64)
        flat = j.ndim == 1
        j, uniforms = (j[:, None], np.asarray(uniforms)[:, None]) if flat else (j, np.asarray(uniforms))
        signal = np.arange(j.shape[1])[None, :]
        order = np.arange(len(j))
        earlier = (order[:, None] > order[None, :])[:, :, None]         # (B, B, 1): b' before b
        suffix = np.cumsum(self.counts[:, ::-1], axis=1)[:, ::-1] - self.counts  # sum of c_i over i > j
        above = (self.n - j) + suffix[signal, j] + ((j[None, :, :] > j[:, None, :]) & earlier).sum(axis=1)
        same = 1 + self.counts[signal, j] + ((j[None, :, :] == j[:, None, :]) & earlier).sum(axis=1)
        u = (above + uniforms * same) / (self.n + self.seen + 1.0 + order)[:, None]
        np.add.at(self.counts, (np.broadcast_to(signal, j.shape), j), 1)
        self.seen += len(j)
        return np.asarray(u[:, 0] if flat else u, dtype=np.float64)


def bet_log_factors(u: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Log of each threshold bet's factor on uniform-under-the-null p-values u (..., T).

    Returns:
        (..., T, len(levels) * len(LAMBDAS)): level-major, bet-minor.
    """
    a = np.asarray(levels, dtype=np.float64)
    hits = (u[..., None] <= a).astype(np.float64)[..., None]            # (..., T, J, 1)
    lam = np.asarray(LAMBDAS)
    threshold = np.log1p(lam * (hits / a[:, None] - 1.0))                # (..., T, J, L)
    return threshold.reshape(*threshold.shape[:-2], -1)


def mixture_log_wealth(log_factors: np.ndarray, weights: np.ndarray,
                       log_start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log of the weighted mixture of bets after each step, and each bet's final log wealth.

    Args:
        log_factors: (..., T, K) the log factor of each of K bets at each of T >= 1 steps.
        weights: (K,) nonnegative weights summing to 1.
        log_start: (..., K) log wealth of each bet before these steps (None: all 0).

    Returns:
        (..., T) log M_t after each step, and (..., K) the bets' log wealth after the last.
    """
    paths = np.cumsum(log_factors, axis=-2)
    if log_start is not None:
        paths = paths + log_start[..., None, :]
    top = paths.max(axis=-1, keepdims=True)
    mixture = (top + np.log((np.exp(paths - top) * weights).sum(axis=-1, keepdims=True)))[..., 0]
    return mixture, paths[..., -1, :]


@dataclass(frozen=True)
class GuaranteeState:
    """The guarantee as last updated.

    Attributes:
        holds: False once the monitor has alarmed (until a recalibration or reset).
        why: One line saying why.
        since: Number of inputs monitored when the current state began (0: since calibration).
        inputs: Inputs monitored so far.
        e_value: The mixture martingale M_t now (evidence against exchangeability).
        threshold: The alarm threshold 1 / delta.
        false_alarm: delta, the probability of a false alarm over any horizon.
        flag_rate_bound: Per signal, the calibration-conditional bound on its clean flag rate at the flag level.
    """

    holds: bool
    why: str
    since: int
    inputs: int
    e_value: float
    threshold: float
    false_alarm: float
    flag_rate_bound: dict[str, float]

    def public(self) -> dict[str, object]:
        """The `"guarantee"` entry of `/status.json` and of each response."""
        return {"holds": self.holds, "why": self.why, "since": self.since}


class GuaranteeMonitor:
    """Conformal test martingale over the guard's p-values (see the module docstring).

    Args:
        n_calibration: Calibration points per signal, in the order of `update`'s columns.
        levels: p-value levels of the threshold bets (the flag level first: its bound is reported).
        false_alarm: delta, the probability of an alarm on exchangeable traffic over any horizon.
        seed: Seed of the U_t.
    """

    def __init__(self, n_calibration: Mapping[str, int], levels: Sequence[float], false_alarm: float = 0.01,
                 seed: int = 0) -> None:
        if not 0.0 < false_alarm < 1.0:
            raise InputError(f"the false-alarm probability must lie in (0, 1), got {false_alarm:g}")
        if not n_calibration or not levels:
            raise InputError("the guarantee monitor needs at least one signal and one level")
        self.names, self.levels, self.false_alarm = list(n_calibration), list(levels), false_alarm
        sizes = {int(n_calibration[name]) for name in self.names}
        if len(sizes) != 1:
            raise InputError(f"the guarantee monitor needs one calibration set for every signal, got sizes {sizes}")
        self.n = sizes.pop()
        bound = float(level_bounds(self.n, self.levels, false_alarm)[1][0])
        self.flag_rate_bound = dict.fromkeys(self.names, bound)
        self.log_threshold = math.log(1.0 / false_alarm)
        bets = len(self.names) * len(self.levels) * len(LAMBDAS)
        self.weights = np.full(bets, 1.0 / bets)  # shared evenly among the signals, levels and bets
        self.seed = seed
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start again from M_0 = 1 with no input seen (after a recalibration or a handled alarm)."""
        with self._lock:
            self._urn = UrnPValues(self.n, len(self.names))
            self._rng = np.random.default_rng(self.seed)
            self._mixture = RestartedMixture(self.weights)
            self._log_mixture = 0.0
            self._inputs = self._since = 0
            self._broken_why: str | None = None

    def update(self, p_values: np.ndarray) -> bool:
        """Add a batch of inputs' conformal p-values (B, D) in signal order; True when this batch breaks it."""
        p = np.asarray(p_values, dtype=np.float64).reshape(-1, len(self.names))
        if len(p) == 0:
            return False
        with self._lock:
            n = self.n
            # p = (1 + #{cal >= s}) / (n + 1): the interval j = #{cal < s}; NaN scores (p = 1/(n+1)) on top.
            below = np.clip(n + 1 - np.rint(p * (n + 1)), 0, n)
            u = self._urn.update(below, self._rng.random(p.shape))                # (B, D)
            factors = bet_log_factors(u, self.levels).reshape(len(p), -1)          # (B, D * J * L)
            mixture = self._mixture.update(factors)
            start, self._inputs = self._inputs, self._inputs + len(p)
            self._log_mixture = float(mixture[-1])
            if self._broken_why is not None:
                return False
            crossed = np.flatnonzero(mixture >= self.log_threshold)
            if not len(crossed):
                return False
            self._since = start + int(crossed[0]) + 1
            share = self._mixture.best_bets().reshape(len(self.names), -1).max(axis=1)
            name = self.names[int(np.argmax(share))]
            self._broken_why = (f"traffic is not exchangeable with the calibration set: {name} p-values run lower "
                                f"than exchangeable traffic's (e-value {math.exp(float(mixture[crossed[0]])):.4g} >= "
                                f"{math.exp(self.log_threshold):.4g} at input {self._since}); flag rates no longer "
                                "hold: recalibrate on clean data from the new distribution")
            return True

    def state(self) -> GuaranteeState:
        """A consistent snapshot."""
        with self._lock:
            e_value = math.exp(min(self._log_mixture, 700.0))
            threshold = math.exp(self.log_threshold)
            why = self._broken_why or (
                f"no evidence against exchangeability after {self._inputs} input(s): e-value {e_value:.3g} < "
                f"{threshold:.4g} (false-alarm probability {self.false_alarm:g} over any horizon)")
            return GuaranteeState(self._broken_why is None, why, self._since, self._inputs, e_value, threshold,
                                  self.false_alarm, dict(self.flag_rate_bound))
