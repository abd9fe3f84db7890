"""Standard training: cross-entropy on clean inputs, the baseline every defense is compared with."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train.base import TRAINERS, StepOutput, Trainer

__all__ = ["Standard"]


@TRAINERS.register("standard")
class Standard(Trainer):
    """Empirical risk minimization: mean cross-entropy of softmax(model(x) / T) on clean inputs.

    With `temperature` T > 1 it trains the teacher of defensive distillation (Papernot et al.,
    IEEE S&P 2016, arXiv:1511.04508, section IV): the logits are divided by T during training only.

    Args:
        temperature: Softmax temperature T used in training (1 is ordinary training).

    Example:
        >>> out = Standard().loss(model, x, y, threat)
    """

    name: ClassVar[str] = "standard"
    adversarial: ClassVar[bool] = False

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Cross-entropy of the tempered logits."""
        logits = model(x)
        return StepOutput(F.cross_entropy(logits / self.temperature, y), logits=logits.detach())
