"""The guarantee monitor: false alarms on exchangeable streams at most delta, bounded delay on shifted ones.

Simulated with numpy on synthetic scores (no model): each stream draws its own calibration set of n
scores and T traffic scores, so the false-alarm rate is the one a deployment sees over the draw of
its calibration set and of its traffic.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from bastion.errors import InputError
from bastion.serve.guarantee import GuaranteeMonitor, level_bounds, mixture_log_wealth

LEVELS = [0.05, 0.1, 0.25]


def p_values(rng: np.random.Generator, streams: int, n: int, horizon: int, shift: float) -> np.ndarray:
    """(streams, horizon) conformal p-values (1 + #{cal >= s}) / (n + 1) of N(shift, 1) traffic vs N(0, 1) scores."""
    cal = np.sort(rng.standard_normal((streams, n)), axis=1)
    traffic = rng.standard_normal((streams, horizon)) + shift
    below = np.stack([np.searchsorted(c, t, side="left") for c, t in zip(cal, traffic, strict=True)])
    return (1.0 + n - below) / (n + 1.0)


def first_alarms(p: np.ndarray, n: int, delta: float, q: np.ndarray | None = None) -> np.ndarray:
    """Index of each stream's first alarm (-1: none), with the monitor's split delta/2 + delta/2."""
    ks, robust = level_bounds(n, LEVELS, delta / 2 / len(LEVELS))
    hits = p[:, :, None] <= ks / (n + 1.0) + 1e-12
    mixture, _ = mixture_log_wealth(hits, robust if q is None else q)
    crossed = mixture >= np.log(2.0 / delta)
    return np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)


def test_false_alarm_rate_on_exchangeable_streams_is_at_most_delta() -> None:
    rng = np.random.default_rng(0)
    delta, n, horizon, streams = 0.1, 300, 2_000, 600
    alarms = sum(int((first_alarms(p_values(rng, 100, n, horizon, 0.0), n, delta) >= 0).sum())
                 for _ in range(streams // 100))
    # H0 of the binomial test: the false-alarm probability is at most delta. It must not be refuted.
    assert binomtest(alarms, streams, delta, alternative="greater").pvalue > 0.01, alarms


def test_bets_that_ignore_the_fixed_calibration_set_are_not_valid() -> None:
    """Betting as if p-values were uniform (q = a) alarms far above delta given a small calibration set:
    the bound of (1) is what makes the test valid against a fixed reference (Shaer et al. 2026)."""
    rng = np.random.default_rng(1)
    delta, n = 0.1, 60
    p = p_values(rng, 300, n, 3_000, 0.0)
    naive = first_alarms(p, n, delta, q=np.floor(np.array(LEVELS) * (n + 1)) / (n + 1))
    robust = first_alarms(p, n, delta)
    assert (naive >= 0).mean() > 2 * delta and binomtest(int((robust >= 0).sum()), 300, delta,
                                                         alternative="greater").pvalue > 0.01


def test_detection_delay_on_a_shifted_stream_is_bounded() -> None:
    rng = np.random.default_rng(2)
    delta, n = 0.01, 1_000
    delays = first_alarms(p_values(rng, 200, n, 1_000, 1.0), n, delta)
    # A one-sigma shift takes the 5% flag rate to about 26%: every stream alarms, most within a few dozen inputs.
    assert (delays >= 0).all() and np.median(delays) <= 60 and delays.max() <= 250, np.percentile(delays, [50, 100])


def test_monitor_breaks_once_and_stays_broken_until_reset() -> None:
    rng = np.random.default_rng(3)
    monitor = GuaranteeMonitor({"a": 1_000, "b": 1_000}, LEVELS, false_alarm=0.01)
    clean = p_values(rng, 2, 1_000, 500, 0.0).T  # (500, 2): two detectors
    for start in range(0, 500, 32):
        assert not monitor.update(clean[start:start + 32])
    state = monitor.state()
    assert state.holds and state.since == 0 and state.inputs == 500 and state.e_value < state.threshold
    assert state.public() == {"holds": True, "why": state.why, "since": 0}
    shifted = p_values(rng, 2, 1_000, 400, 1.5).T
    broke = [monitor.update(shifted[i:i + 8]) for i in range(0, 400, 8)]
    assert sum(broke) == 1
    state = monitor.state()
    assert not state.holds and 500 < state.since <= 900 and "not exchangeable" in state.why
    assert state.inputs == 900
    # The batch split does not change the result: the same martingale, fed one input at a time.
    other = GuaranteeMonitor({"a": 1_000, "b": 1_000}, LEVELS, false_alarm=0.01)
    for row in np.concatenate([clean, shifted]):
        other.update(row[None])
    assert other.state().since == state.since
    monitor.reset()
    assert monitor.state().holds and monitor.state().inputs == 0


def test_flag_rate_bound_exceeds_the_level_by_the_estimation_error() -> None:
    small = GuaranteeMonitor({"d": 200}, [0.05], 0.01).flag_rate_bound["d"]
    large = GuaranteeMonitor({"d": 20_000}, [0.05], 0.01).flag_rate_bound["d"]
    assert 0.05 < large < 0.06 < small < 0.15
    with pytest.raises(InputError, match="outside"):
        GuaranteeMonitor({"d": 10}, [0.01], 0.01)
    with pytest.raises(InputError, match="false-alarm"):
        GuaranteeMonitor({"d": 100}, [0.05], 1.5)
