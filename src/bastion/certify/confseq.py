"""Anytime-valid tests of a Bernoulli rate against a threshold: the e-values behind sequential certification.

Randomized smoothing certifies radius r at a point when the top class's probability pA exceeds
q(r) = Phi(r / sigma) (Cohen et al., ICML 2019, arXiv:1902.02918, Theorem 1). Voracek & Hein
("Treatment of Statistical Estimation Problems in Randomized Smoothing for Adversarial Robustness",
NeurIPS 2024, arXiv:2406.17830) decide that question with confidence sequences: tests valid at every
sample size at once, so sampling can stop as soon as the answer is clear.

The test here is Robbins' mixture martingale (Robbins 1970; Howard et al. 2021, arXiv:1810.08240,
section 3) for k successes in n Bernoulli draws, with the Beta(1/2, 1/2) (Krichevsky-Trofimov)
mixing prior that Voracek & Hein use, truncated to the alternative side of the threshold q:

    E_n(q) = [ int_{r >= q} r^k (1 - r)^(n - k) dpi(r) / pi([q, 1]) ] / [ q^k (1 - q)^(n - k) ].

For every r >= q, (r / q)^k ((1 - r) / (1 - q))^(n - k) is a nonnegative supermartingale under any
p <= q (its expected factor per draw, p r / q + (1 - p)(1 - r)/(1 - q), is at most 1), and so is
their mixture under a prior fixed in advance. Ville's inequality then gives, for every p <= q,

    P_p( exists n: E_n(q) >= 1 / alpha ) <= alpha,                                          (1)

over any number of looks and any stopping rule. The mirror test (prior truncated to r <= q) rejects
p >= q with the same guarantee. Truncating the prior to one side concentrates its mass where the
test needs it: near pA = 1 it certifies radius 1 at sigma 0.5 from about 350 unanimous samples
where the untruncated mixture needs about 460 (the fixed-n Clopper-Pearson bound needs 300).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc, betaincc, betaln
from scipy.stats import norm

__all__ = ["log_evalue_above", "log_evalue_below", "samples_to_certify", "threshold"]

_HALF = 0.5  # the Beta(1/2, 1/2) prior's parameters


def threshold(radius: float, sigma: float) -> tuple[float, float]:
    """q(r) = Phi(r / sigma) and 1 - q(r), each computed without cancellation (1 - q is tiny at large radii)."""
    return float(norm.cdf(radius / sigma)), float(norm.sf(radius / sigma))


def _log(x: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore"):
        return np.log(x)


def _log_null(k: NDArray[np.float64], n: NDArray[np.float64], q: float, one_minus_q: float) -> NDArray[np.float64]:
    return k * math.log(q) + (n - k) * math.log(one_minus_q)


def log_evalue_above(k: ArrayLike, n: ArrayLike, q: float, one_minus_q: float | None = None) -> NDArray[np.float64]:
    """The log of E_n(q), equation (1): evidence that p > q after k successes in n draws (vectorized over k, n).

    Guarantee: for every p <= q, P(log E_n(q) >= log(1 / alpha) for some n) <= alpha.

    Args:
        k: Successes, 0 <= k <= n.
        n: Draws.
        q: The threshold, in (0, 1).
        one_minus_q: 1 - q, passed when it is too small to compute as `1 - q` (default 1 - q).
    """
    return _log_evalue(k, n, q, one_minus_q, above=True)


def log_evalue_below(k: ArrayLike, n: ArrayLike, q: float, one_minus_q: float | None = None) -> NDArray[np.float64]:
    """The mirror of `log_evalue_above`: evidence that p < q (prior truncated to r <= q).

    Guarantee: for every p >= q, P(log E_n >= log(1 / alpha) for some n) <= alpha.
    """
    return _log_evalue(k, n, q, one_minus_q, above=False)


def _log_evalue(k: ArrayLike, n: ArrayLike, q: float, one_minus_q: float | None, *, above: bool) -> NDArray[np.float64]:
    kk, nn = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    rest = 1.0 - q if one_minus_q is None else one_minus_q
    a, b = kk + _HALF, nn - kk + _HALF
    # int_q^1 r^(a-1) (1-r)^(b-1) dr = B(a, b) * I_{1-q}(b, a), and int_0^q is its complement: written with
    # 1 - q, exact near q = 1.
    share = betainc if above else betaincc
    mixture = betaln(a, b) + _log(share(b, a, rest))
    prior_mass = betaln(_HALF, _HALF) + math.log(float(share(_HALF, _HALF, rest)))
    return np.asarray(mixture - prior_mass - _log_null(kk, nn, q, rest), dtype=np.float64)


def samples_to_certify(p: float, q: float, one_minus_q: float, alpha: float, start: int, limit: int) -> int | None:
    """The fewest draws n in [start, limit] at which a rate `p` would give E_n(q) >= 1 / alpha, or None.

    A planning estimate, not a guarantee: it reads k = p * n successes off the expected path. The
    sequential certifier uses it to stop sampling a point that could not be decided within its budget.
    """
    if p <= q or start > limit:
        return None
    grid = np.unique(np.geomspace(max(start, 1), limit, num=48).round().astype(np.int64))
    crossed = np.nonzero(log_evalue_above(p * grid, grid, q, one_minus_q) >= math.log(1.0 / alpha))[0]
    return int(grid[crossed[0]]) if len(crossed) else None
