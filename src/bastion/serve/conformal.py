"""Conformal p-values of detector scores against a clean calibration set.

Vovk, Gammerman & Shafer, "Algorithmic Learning in a Random World" (2005), and Angelopoulos &
Bates, "A Gentle Introduction to Conformal Prediction" (2021, arXiv:2107.07511): with clean
calibration scores s_1..s_n and a new score s, the conformal p-value

    p(s) = (1 + #{i : s_i >= s}) / (n + 1)

is super-uniform for a clean input exchangeable with the calibration points: P(p <= alpha) <= alpha
for every alpha in (0, 1). Flagging when p <= alpha therefore flags at most a share alpha of clean
inputs, whatever the detector. With m detectors each tested at alpha / m, the union bound keeps the
rate of "flagged by any" at most alpha (Bonferroni).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bastion.errors import InputError

__all__ = ["ConformalScores", "bonferroni_level"]


@dataclass(frozen=True)
class ConformalScores:
    """A detector's sorted clean calibration scores, and p-values of new scores against them.

    Attributes:
        name: The detector's name.
        sorted_scores: (n,) float64 calibration scores in increasing order, on the CPU.
    """

    name: str
    sorted_scores: Tensor

    @classmethod
    def fit(cls, name: str, scores: Tensor) -> ConformalScores:
        """Keep the calibration scores (n,) sorted; NaN is refused."""
        values = scores.detach().flatten().double().cpu()
        if values.numel() == 0 or bool(torch.isnan(values).any()):
            raise InputError(f"calibration scores of {name} are empty or contain NaN")
        return cls(name, values.sort().values)

    @property
    def n(self) -> int:
        """Calibration points."""
        return int(self.sorted_scores.numel())

    def p_values(self, scores: Tensor) -> Tensor:
        """(B,) conformal p-values in [1/(n+1), 1] of new scores (B,); NaN scores get the smallest p-value."""
        s = scores.detach().flatten().double().cpu().numpy()
        # Number of calibration scores >= s: n minus those strictly below s (numpy: small arrays, hot path).
        below = np.searchsorted(self.sorted_scores.numpy(), s, side="left")
        p = (1.0 + self.n - below) / (self.n + 1.0)
        return torch.from_numpy(np.where(np.isnan(s), 1.0 / (self.n + 1.0), p))

    def smallest_level(self) -> float:
        """The smallest p-value these scores can give, 1 / (n + 1): a level below it never flags."""
        return 1.0 / (self.n + 1.0)

    def summary(self) -> dict[str, float]:
        """Calibration size and quantiles, for the status page."""
        q = torch.quantile(self.sorted_scores, torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
        return {"n": float(self.n), "median": float(q[0]), "q90": float(q[1]), "q99": float(q[2])}


def bonferroni_level(alpha: float, detectors: Sequence[ConformalScores]) -> float:
    """Per-detector level alpha / m, refused when it lies below every p-value a detector can give.

    Raises:
        InputError: when a calibration set is too small for the level (n + 1 < m / alpha).
    """
    level = alpha / max(1, len(detectors))
    for d in detectors:
        if level < d.smallest_level():
            need = int(1.0 / level) - 1
            raise InputError(f"a false-positive rate of {alpha:g} over {len(detectors)} detector(s) needs at least "
                             f"{need} calibration points, {d.name} has {d.n}")
    return level
