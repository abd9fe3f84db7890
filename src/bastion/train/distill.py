"""Defensive distillation (Papernot et al., IEEE S&P 2016): a student trained on a tempered teacher's soft labels."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train.base import TRAINERS, StepOutput, Trainer

__all__ = ["Distill"]


@TRAINERS.register("distill")
class Distill(Trainer):
    """Defensive distillation (Papernot, McDaniel, Wu, Jha & Swami, IEEE S&P 2016, arXiv:1511.04508, section IV).

    The teacher is trained at temperature T (`bastion train --method standard --temperature T`);
    the student minimizes the cross-entropy between softmax(teacher(x) / T) and
    softmax(student(x) / T), and is deployed at T = 1. It is known to mask gradients rather than
    remove adversarial examples (Carlini & Wagner, S&P 2017, arXiv:1608.04644): evaluate it with
    margin losses (`--loss cw`), not only cross-entropy.

    Args:
        teacher: The trained teacher network (kept frozen, in eval mode).
        temperature: The distillation temperature T (the paper: 20 to 100 on MNIST).

    Example:
        >>> out = Distill(teacher, temperature=20).loss(student, x, y, threat)
    """

    name: ClassVar[str] = "distill"
    adversarial: ClassVar[bool] = False

    def __init__(self, teacher: nn.Module | None = None, temperature: float = 20.0) -> None:
        if not isinstance(teacher, nn.Module):
            raise InputError("distill needs a teacher model (--teacher SPEC), trained with --temperature T")
        if not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        self.teacher = teacher
        self.temperature = float(temperature)

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Soft-label cross-entropy at temperature T."""
        with torch.no_grad():
            soft = F.softmax(self.teacher.eval()(x) / self.temperature, dim=1)
        logits = model(x)
        loss = -(soft * F.log_softmax(logits / self.temperature, dim=1)).sum(dim=1).mean()
        return StepOutput(loss, logits=logits.detach())
