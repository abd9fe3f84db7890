"""An anytime-valid monitor of the guard's guarantee: are the conformal p-values still super-uniform?

The guard flags an input when a detector's conformal p-value (`bastion.serve.conformal`) is at most
its level a. That promises a clean flag rate of at most a only while traffic is drawn from the
distribution of the calibration set. This module tests that hypothesis on every input, and keeps
testing for as long as the server runs, with a conformal test martingale (Vovk, Nouretdinov &
Gammerman, "Testing exchangeability on-line", ICML 2003; Vovk, Petej, Nouretdinov, Ahlberg, Carlsson
& Gammerman, "Retrain or not retrain: conformal test martingales for change-point detection",
COPA 2021, arXiv:2102.10439), made valid against a FIXED calibration set following the idea of
Shaer, Bar, Prinster & Romano ("Testing for distribution shifts with conditional conformal test
martingales", 2026, arXiv:2602.13848): p-values computed against one calibration set are not
independent uniforms given that set, so the bets must account for the estimation error of the
finite reference. Their robust martingale does this in general; the construction below does it
for threshold bets, with the exact law (1) of the hit probabilities and a union bound.

Construction. Let n be the calibration size and a = k / (n + 1) a tested level (k integer). Given
the calibration scores C, clean traffic gives i.i.d. p-values with

    H_k(C) = P(p_t <= k / (n + 1) | C) ~ Beta(k, n + 1 - k)                                  (1)

(the tail mass above the k-th largest calibration score, for continuous scores; ties make p-values
larger, so H_k only shrinks; Vovk, "Conditional validity of inductive conformal predictors", ACML
2012, arXiv:1209.2673). With q_k the (1 - delta_cal / K) quantile of that Beta law, the event
E = {H_k(C) <= q_k for each of the K tested (detector, level) pairs} has probability >= 1 - delta_cal
by the union bound. On E, for each bet lambda in [0, 1] the product

    M_t(k, lambda) = prod_{s <= t} (1 + lambda (1{p_s <= a} / q_k - 1))                        (2)

is a nonnegative supermartingale given C (each factor has conditional mean 1 + lambda (H_k / q_k
- 1) <= 1), and so is their average over a grid of levels and bets, M_t = mean M_t(k, lambda),
which starts at 1. Ville's inequality (1939) bounds its crossing of 1 / delta_seq at ANY time:

    P(exists t: M_t >= 1 / delta_seq | C) <= delta_seq    on E,                                 (3)

so clean i.i.d. traffic raises a false alarm, over an unbounded horizon, with probability at most
delta_seq + delta_cal = delta (split in halves). After an alarm the guarantee stays broken until the
guard is recalibrated or the monitor reset. The test is one-sided: traffic whose p-values are
larger than the calibration set's (inputs more typical than it) keeps every flag-rate promise and
raises no alarm. On E, the clean flag rate of a detector at level a is at most q_k: `flag_rate_bound`
reports it, the calibration-conditional guarantee (it exceeds a by the estimation error of n points).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta as beta_law

from bastion.errors import InputError

__all__ = ["GuaranteeMonitor", "GuaranteeState", "level_bounds", "mixture_log_wealth"]

#: Bets of the mixture (2): small bets catch small excesses slowly, large ones large excesses fast.
LAMBDAS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7)


def level_bounds(n: int, levels: Sequence[float], delta_cal: float) -> tuple[np.ndarray, np.ndarray]:
    """The index k = floor(a (n + 1)) of each level a and q_k, the (1 - delta_cal) quantile of Beta(k, n + 1 - k).

    Levels below 1 / (n + 1) can never be reached by a p-value and are refused.
    """
    ks = np.floor(np.asarray(levels, dtype=np.float64) * (n + 1) + 1e-9).astype(np.int64)
    if (ks < 1).any() or (ks > n).any():
        raise InputError(f"a monitored level in {list(levels)} lies outside what {n} calibration points can test")
    q = beta_law.ppf(1.0 - delta_cal, ks, n + 1 - ks)
    return ks, np.minimum(np.asarray(q, dtype=np.float64), 1.0)


def mixture_log_wealth(hits: np.ndarray, q: np.ndarray, log_start: np.ndarray | None = None,
                       lambdas: Sequence[float] = LAMBDAS) -> tuple[np.ndarray, np.ndarray]:
    """Log M_t of the mixture (2) after each step, and each component's final log wealth.

    Args:
        hits: (..., T, K) booleans 1{p_t <= a_k} for T >= 1 steps and K tested (detector, level) pairs.
        q: (K,) the bounds q_k on the clean hit probabilities.
        log_start: (..., K, L) log wealth of each component before these steps (None: all 0).
        lambdas: The L bets.

    Returns:
        (..., T) log of the mixture after each step, and (..., K, L) the components' log wealth after the last.
    """
    lam = np.asarray(lambdas, dtype=np.float64)
    win = np.log1p(lam[None, :] * (1.0 / q[:, None] - 1.0))  # (K, L): the factor after a hit
    lose = np.log1p(-lam)[None, :]                               # (1, L): after a miss
    steps = np.where(hits[..., None], win, lose)                 # (..., T, K, L)
    paths = np.cumsum(steps, axis=-3)
    if log_start is not None:
        paths = paths + log_start[..., None, :, :]
    flat = paths.reshape(*paths.shape[:-2], -1)
    top = flat.max(axis=-1, keepdims=True)
    mixture = (top + np.log(np.exp(flat - top).mean(axis=-1, keepdims=True)))[..., 0]
    return mixture, paths[..., -1, :, :]


@dataclass(frozen=True)
class GuaranteeState:
    """The guarantee as last updated.

    Attributes:
        holds: False once the monitor has alarmed (until a recalibration or reset).
        why: One line saying why.
        since: Number of inputs monitored when the current state began (0: since calibration).
        inputs: Inputs monitored so far.
        e_value: The mixture martingale M_t now (evidence against exchangeability).
        threshold: The alarm threshold 1 / delta_seq.
        false_alarm: delta, the probability of a false alarm over any horizon.
        flag_rate_bound: Per detector, the calibration-conditional bound q on its clean flag rate.
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
        n_calibration: Calibration points per detector.
        levels: p-value levels tested (the flag level first: its bound is reported).
        false_alarm: delta, the probability of an alarm on clean i.i.d. traffic over any horizon.
    """

    def __init__(self, n_calibration: Mapping[str, int], levels: Sequence[float], false_alarm: float = 0.01) -> None:
        if not 0.0 < false_alarm < 1.0:
            raise InputError(f"the false-alarm probability must lie in (0, 1), got {false_alarm:g}")
        if not n_calibration or not levels:
            raise InputError("the guarantee monitor needs at least one detector and one level")
        self.names, self.levels, self.false_alarm = list(n_calibration), list(levels), false_alarm
        pairs = len(self.names) * len(self.levels)
        delta_cal = delta_seq = false_alarm / 2.0
        self.log_threshold = math.log(1.0 / delta_seq)
        self._cuts, bounds = [], []
        for name in self.names:
            n = n_calibration[name]
            ks, q = level_bounds(n, self.levels, delta_cal / pairs)
            self._cuts.append(ks / (n + 1.0))
            bounds.append(q)
        self._cut = np.stack(self._cuts)            # (D, J): p <= cut counts as a hit
        self.q = np.concatenate(bounds)             # (D * J,)
        self.flag_rate_bound = {name: float(b[0]) for name, b in zip(self.names, bounds, strict=True)}
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start again from M_0 = 1 with no input seen (after a recalibration or a handled alarm)."""
        with self._lock:
            self._log_wealth = np.zeros((len(self.q), len(LAMBDAS)))
            self._log_mixture = 0.0
            self._inputs = self._since = 0
            self._broken_why: str | None = None

    def update(self, p_values: np.ndarray) -> bool:
        """Add a batch of inputs' p-values (B, D) in detector order; True when this batch breaks the guarantee."""
        p = np.asarray(p_values, dtype=np.float64).reshape(-1, len(self.names))
        if len(p) == 0:
            return False
        hits = (p[:, :, None] <= self._cut[None] + 1e-12).reshape(len(p), -1)
        with self._lock:
            mixture, self._log_wealth = mixture_log_wealth(hits, self.q, self._log_wealth)
            start, self._inputs = self._inputs, self._inputs + len(p)
            self._log_mixture = float(mixture[-1])
            if self._broken_why is not None:
                return False
            crossed = np.flatnonzero(mixture >= self.log_threshold)
            if not len(crossed):
                return False
            self._since = start + int(crossed[0]) + 1
            worst = int(np.argmax(self._log_wealth.max(axis=1)))
            d, j = divmod(worst, len(self.levels))
            self._broken_why = (f"traffic is not exchangeable with the calibration set: {self.names[d]} p-values "
                                f"<= {self._cut[d, j]:.4g} come more often than the at most {self.q[worst]:.4g} "
                                f"of clean traffic (e-value {math.exp(float(mixture[crossed[0]])):.4g} >= "
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
