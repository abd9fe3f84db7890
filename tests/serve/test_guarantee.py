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
from bastion.serve.guarantee import GuaranteeMonitor, UrnPValues, bet_log_factors, mixture_log_wealth

LEVELS = [0.05, 0.1, 0.25]


def p_values(rng: np.random.Generator, streams: int, n: int, horizon: int, shift: float) -> np.ndarray:
    """(streams, horizon) conformal p-values (1 + #{cal >= s}) / (n + 1) of N(shift, 1) traffic vs N(0, 1) scores."""
    cal = np.sort(rng.standard_normal((streams, n)), axis=1)
    traffic = rng.standard_normal((streams, horizon)) + shift
    below = np.stack([np.searchsorted(c, t, side="left") for c, t in zip(cal, traffic, strict=True)])
    return (1.0 + n - below) / (n + 1.0)


def first_alarms(p: np.ndarray, n: int, delta: float, chunk: int = 200) -> np.ndarray:
    """Input at which each stream's monitor broke the guarantee (-1: never), fed `chunk` inputs at a time."""
    out = []
    for i, row in enumerate(p):
        monitor = GuaranteeMonitor({"s": n}, LEVELS, delta, seed=i)
        for start in range(0, len(row), chunk):
            if monitor.update(row[start:start + chunk, None]):
                break
        out.append(-1 if monitor.state().holds else monitor.state().since)
    return np.array(out)


def test_false_alarm_rate_on_exchangeable_streams_is_at_most_delta() -> None:
    """Over 9,000 inputs: 18 restarted copies of the bets, of which 16 are kept (`bastion.serve.restarts`)."""
    rng = np.random.default_rng(0)
    delta, n, streams = 0.1, 300, 100
    alarms = int((first_alarms(p_values(rng, streams, n, 9_000, 0.0), n, delta, chunk=300) >= 0).sum())
    # H0 of the binomial test: the false-alarm probability is at most delta. It must not be refuted.
    assert binomtest(alarms, streams, delta, alternative="greater").pvalue > 0.01, alarms


def test_the_urn_p_values_are_uniform_and_betting_on_the_fixed_set_alone_is_not_valid() -> None:
    """Against a small fixed calibration set the conformal p-values are not i.i.d. uniform: betting as if they
    were alarms far above delta. The urn's predictive p-values (1) are uniform, whatever the batch split."""
    rng = np.random.default_rng(1)
    delta, n = 0.1, 60
    p = p_values(rng, 200, n, 2_000, 0.0)
    naive = bet_log_factors(p, LEVELS)
    weights = np.full(naive.shape[-1], 1.0 / naive.shape[-1])
    mixture, _ = mixture_log_wealth(naive, weights)
    assert (mixture >= np.log(1 / delta)).any(axis=1).mean() > 2 * delta
    alarms = int((first_alarms(p, n, delta, chunk=500) >= 0).sum())
    assert binomtest(alarms, len(p), delta, alternative="greater").pvalue > 0.01, alarms
    below = np.clip(n + 1 - np.rint(p[:20] * (n + 1)), 0, n)
    u = np.concatenate([UrnPValues(n).update(row, rng.random(len(row))) for row in below])
    assert abs(u.mean() - 0.5) < 0.01 and abs((u <= 0.1).mean() - 0.1) < 0.01
    whole, split = UrnPValues(n), UrnPValues(n)
    uniforms = rng.random(100)
    first = below[0, :100]
    one = whole.update(first, uniforms)
    parts = np.concatenate([split.update(first[s:s + 7], uniforms[s:s + 7]) for s in range(0, 100, 7)])
    assert np.allclose(one, parts) and (whole.counts == split.counts).all()


def test_detection_delay_on_a_shifted_stream_is_bounded() -> None:
    rng = np.random.default_rng(2)
    delta, n = 0.01, 1_000
    delays = first_alarms(p_values(rng, 100, n, 1_000, 1.0), n, delta, chunk=16)
    # A one-sigma shift takes the 5% flag rate to about 26%: every stream alarms within a few dozen inputs.
    assert (delays >= 0).all() and np.median(delays) <= 40 and delays.max() <= 100, np.percentile(delays, [50, 100])
    # A shift of a quarter sigma (flag rate about 8%, p-values lower throughout): most streams alarm within 1,000.
    mild = first_alarms(p_values(rng, 60, n, 1_000, 0.25), n, delta, chunk=50)
    assert (mild >= 0).mean() >= 0.8, (mild >= 0).mean()


def test_a_change_after_a_long_clean_stretch_is_caught_quickly() -> None:
    """Bets started at the first input decay on clean traffic (a 0.5 sigma shift after 50,000 clean inputs
    took over 2,000 inputs to alarm); the restarted copies catch it within a few hundred."""
    rng = np.random.default_rng(4)
    delays = []
    for seed in range(6):
        monitor = GuaranteeMonitor({"s": 1_000}, LEVELS, 0.01, seed=seed)
        clean = p_values(rng, 1, 1_000, 20_000, 0.0)[0]
        for start in range(0, len(clean), 2_000):
            assert not monitor.update(clean[start:start + 2_000, None])
        shifted = p_values(rng, 1, 1_000, 1_000, 1.0)[0]
        for start in range(0, len(shifted), 10):
            if monitor.update(shifted[start:start + 10, None]):
                break
        delays.append(monitor.state().since - 20_000 if not monitor.state().holds else 10**9)
    assert max(delays) <= 150, delays


def test_monitor_breaks_once_and_stays_broken_until_reset() -> None:
    rng = np.random.default_rng(3)
    monitor = GuaranteeMonitor({"a": 1_000, "b": 1_000}, LEVELS, false_alarm=0.01)
    clean = p_values(rng, 2, 1_000, 500, 0.0).T  # (500, 2): two signals
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
    assert other.state().since == state.since and np.isclose(other.state().e_value, state.e_value)
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
