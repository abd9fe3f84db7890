"""Sound sampling in floating point: the base classifier sees only a fixed grid of noisy inputs.

Voracek & Hein, "Sound Randomized Smoothing in Floating-Point Arithmetic" (ICLR 2023,
arXiv:2207.07209) show that CERTIFY as usually computed, x + noise in float32 fed to the network,
can certify radii a classifier is not robust at: the low bits of fl(x + e) tell which x the noise
was added to, and a classifier can read them. Their remedy quantizes the noisy input before the
network sees it. This module follows that idea with a bound instead of exact discrete sampling:

1. Noise is drawn and added in float64, then rounded to the grid GRID * Z (2^-12): the network
   sees Q(x + e), a function of the exact sum except when x + e lies within float64's rounding
   error (one ulp) of a rounding boundary of Q.
2. Randomized smoothing's theorem (Cohen et al., ICML 2019, Theorem 1) holds for any base
   classifier, in particular for f o Q with exact Gaussian noise. The computed votes differ from
   votes of f o Q on exact sums with probability at most `slack(...)` per sample (d coordinates,
   each within one ulp of a boundary with probability at most 2 ulp / GRID, plus the Gaussian tail
   beyond 12 sigma that bounds the magnitudes), so subtracting `slack` from the lower bound on pA
   (or adding it to each threshold of a sequential test) keeps the certificate sound.

`slack` is about 6e-9 for MNIST-sized inputs at sigma 0.5: the certificates match the unsound
ones to the digits shown; the cost is float64 noise (see benchmarks/bench_certify_sequential.py).
"""

from __future__ import annotations

import math

import torch
from scipy.stats import norm
from torch import Tensor

__all__ = ["GRID", "quantize", "slack"]

GRID = 2.0**-12
_TAIL = 12.0  # standard deviations beyond which the noise's magnitude is not bounded (probability ~1e-33)


def quantize(noisy: Tensor, dtype: torch.dtype) -> Tensor:
    """Round float64 noisy inputs to the grid in place and return them in the model's dtype."""
    return noisy.div_(GRID).round_().mul_(GRID).to(dtype)


def slack(x: Tensor, sigma: float) -> float:
    """An upper bound on the probability that one computed sample's input differs from Q(x + e) with exact e.

    Args:
        x: The images (B, C, H, W) (their largest magnitude bounds the sums with the noise).
        sigma: Noise standard deviation.
    """
    dim = math.prod(x.shape[1:])
    bound = float(x.detach().abs().max()) + _TAIL * sigma
    ulp = 2.0 ** (math.ceil(math.log2(max(bound, 1e-300))) - 52)
    return dim * (2 * ulp / GRID + 2 * float(norm.sf(_TAIL)))
