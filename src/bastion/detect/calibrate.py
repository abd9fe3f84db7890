"""Thresholds calibrated on clean data to a target false-positive rate.

The threshold is a conformal quantile (Vovk et al. 2005; Angelopoulos & Bates 2021,
arXiv:2107.07511, section 1.1): with n clean calibration scores s_1..s_n and target rate alpha,

    k = ceil((n + 1) * (1 - alpha)),  t = s_(k)  (the k-th smallest),  flag x when score(x) > t.

Guarantee: for a new clean input exchangeable with the calibration points (drawn from the same
distribution), P(score > t) <= alpha, over the draw of the calibration set and the input. Without
ties the rate is also at least alpha - 1/(n + 1). On the calibration points themselves at most
n - k <= alpha * (n + 1) - 1 scores exceed t, an empirical rate below alpha. The plain empirical
(1 - alpha)-quantile, s_(ceil(n (1 - alpha))), lacks the +1 and overshoots alpha by up to 1/n on new
data. It needs n >= 1/alpha - 1 points (k <= n); fewer cannot guarantee alpha and are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bastion.detect.detectors import Detector
from bastion.errors import InputError
from bastion.passes import attack_mode

__all__ = ["CalibratedDetector", "calibrate", "conformal_threshold", "score_batches"]


def _check_fpr(fpr: float) -> float:
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0.0 < float(fpr) < 1.0:
        raise InputError(f"the false-positive rate must lie strictly between 0 and 1, got {fpr!r}")
    return float(fpr)


def conformal_threshold(scores: Tensor, fpr: float) -> float:
    """The threshold t = s_(ceil((n + 1)(1 - fpr))) of the module docstring; flag scores > t.

    Args:
        scores: (n,) scores of clean calibration inputs; NaN is refused.
        fpr: Target false-positive rate in (0, 1).

    Raises:
        InputError: for a bad rate, NaN scores, or fewer than 1/fpr - 1 scores.
    """
    fpr = _check_fpr(fpr)
    values = scores.detach().flatten().double().cpu()
    n = values.numel()
    if bool(torch.isnan(values).any()):
        raise InputError("calibration scores contain NaN")
    k = math.ceil((n + 1) * (1.0 - fpr) - 1e-9)  # the tolerance keeps e.g. 20 * 0.95 at 19, not 20
    if n == 0 or k > n:
        need = math.ceil((1.0 - fpr) / fpr - 1e-9)
        raise InputError(f"calibrating at a false-positive rate of {fpr:g} needs at least {need} clean points, got {n}")
    return float(values.sort().values[k - 1])


def score_batches(detector: Detector, model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """The detector's scores for `x` in batches, without gradients, in eval mode; (N,) on x's device."""
    if len(x) == 0:
        return torch.empty(0, device=x.device)
    with attack_mode(model), torch.no_grad():
        return torch.cat([detector.score(model, chunk).detach() for chunk in _chunks(x, batch_size)])


def _chunks(x: Tensor, batch_size: int) -> Iterator[Tensor]:
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    yield from torch.split(x, batch_size)


@dataclass(frozen=True)
class CalibratedDetector:
    """A detector with its threshold: inputs scoring above `threshold` are flagged.

    Attributes:
        detector: The score.
        threshold: Flag when score > threshold.
        fpr: The target false-positive rate the threshold was calibrated to.
        n_calibration: Clean points used.
        calibration_fpr: Share of the calibration points flagged (at most `fpr`).
    """

    detector: Detector
    threshold: float
    fpr: float
    n_calibration: int
    calibration_fpr: float

    @property
    def name(self) -> str:
        """The detector's name."""
        return self.detector.name

    def flags(self, scores: Tensor) -> Tensor:
        """Bool mask of the scores that are flagged."""
        return scores > self.threshold

    def flag(self, model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
        """(B,) bool: which inputs the detector flags."""
        return self.flags(score_batches(self.detector, model, x, batch_size))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"detector": self.name, "settings": repr(self.detector), "threshold": self.threshold,
                "fpr": self.fpr, "n_calibration": self.n_calibration, "calibration_fpr": self.calibration_fpr}


def calibrate(
    detector: Detector, model: nn.Module, x_clean: Tensor, fpr: float = 0.05, *, batch_size: int = 256
) -> CalibratedDetector:
    """Score clean inputs and set the threshold at false-positive rate `fpr` (see the module docstring).

    Args:
        detector: The score to calibrate.
        model: The classifier the detector watches.
        x_clean: (n, C, H, W) clean inputs in [0, 1], on the model's device; n >= 1/fpr - 1.
        fpr: Target false-positive rate in (0, 1).
        batch_size: Inputs per forward pass.

    Example:
        >>> guard = calibrate(FeatureSqueezing(), model, x_train[:1000], fpr=0.05)
        >>> guard.flag(model, x_new)
    """
    scores = score_batches(detector, model, x_clean, batch_size)
    threshold = conformal_threshold(scores, fpr)
    flagged = float((scores > threshold).float().mean())
    return CalibratedDetector(detector, threshold, float(fpr), int(scores.numel()), flagged)
