"""The min-norm stage's typed result: the minimal adversarial norms found, and the accuracy read off them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.evaluate.result import CurvePoint
from bastion.evaluate.stages.sparse import SparseResult

__all__ = ["MinNormResult", "NormBound"]


@dataclass(frozen=True)
class NormBound:
    """The robust accuracy at radius `eps` that the minimal norms allow (an upper bound)."""

    eps: float
    accuracy: float


@dataclass(frozen=True)
class MinNormResult(SparseResult):
    """The minimal-norm profile: the attack, the norms it found on the correct points, and the accuracy read off them.

    Attributes:
        attack: The minimal-norm attack's name; settings: its settings.
        attacked: Correct points attacked; found: those the attack found an adversarial example for.
        median, mean: Of the norms found (None when none was found).
        quantiles: q10, q25, q50, q75 and q90 of the norms found.
        curve: The accuracy at each radius of the grid (`bounds()` as curve points).
    """

    attack: str
    settings: dict[str, Any]
    attacked: int
    found: int
    median: float | None
    mean: float | None
    quantiles: dict[str, float]
    curve: list[NormBound]

    def bounds(self) -> list[CurvePoint]:
        """The robust accuracy at each radius of the grid that the minimal norms allow (an upper bound)."""
        return [CurvePoint(eps=float(c.eps), accuracy=float(c.accuracy)) for c in self.curve]
