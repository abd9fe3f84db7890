"""Output post-processing that masks gradients: kept as named teaching examples, not as defenses.

Returning saturated probabilities, or rounding them, leaves every decision unchanged and makes the
gradients of cross-entropy vanish or vanish entirely: attacks stall and the model looks robust
(Carlini & Wagner, S&P 2017, arXiv:1608.04644, on defensive distillation; Athalye et al. 2018).
Both declare the identity as their BPDA backward, i.e. attack the logits underneath.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from bastion.defenses.base import DEFENSES, Defense, shattered
from bastion.defenses.preprocessing import _int, _positive

__all__ = ["QuantizeOutput", "Saturate"]


@DEFENSES.register("saturate")
class Saturate(Defense):
    """Return softmax(scale * logits): saturated probabilities instead of logits (gradient masking).

    Args:
        scale: Multiplies the logits before the softmax (large values saturate it to 0 and 1).
    """

    name: ClassVar[str] = "saturate"
    stage: ClassVar[str] = "output"

    def __init__(self, scale: float = 10.0) -> None:
        super().__init__()
        self.scale = _positive("scale", scale)

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"scale": self.scale}

    def forward(self, logits: Tensor) -> Tensor:
        """Probabilities (B, K), rows summing to one."""
        return torch.softmax(self.scale * logits, dim=1)


@DEFENSES.register("quantize-output")
class QuantizeOutput(Defense):
    """Return softmax probabilities rounded to `decimals` places: zero gradient everywhere (gradient masking).

    Args:
        decimals: Decimal places kept.
    """

    name: ClassVar[str] = "quantize-output"
    stage: ClassVar[str] = "output"

    def __init__(self, decimals: int = 1) -> None:
        super().__init__()
        self.decimals = _int("decimals", decimals, 0, 6)

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"decimals": self.decimals}

    def forward(self, logits: Tensor) -> Tensor:
        """Rounded probabilities (B, K); ties in the top class are broken by the logits, unchanged decisions."""
        return shattered(logits, self._round)

    def _round(self, logits: Tensor) -> Tensor:
        probabilities = torch.softmax(logits, dim=1)
        scale = float(10**self.decimals)
        rounded = torch.round(probabilities * scale) / scale
        # A tiny share of the true probabilities keeps the arg max of the rounded rows unchanged.
        return rounded + 1e-6 * probabilities
