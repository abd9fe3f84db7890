"""The trainer contract: hyperparameters in the constructor, model, batch and threat model at call time.

A trainer only says how one batch turns into a loss (`loss`), or, for methods that update the
weights more than once per batch (free adversarial training), how one batch is trained (`step`).
Everything else (epochs, optimizer, schedules, eps ramp-up, checkpoints, guards) lives in
`bastion.train.loop.fit`, shared by every method.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bastion.registry import Registry
from bastion.threat import ThreatModel

__all__ = ["TRAINERS", "StepOutput", "Trainer"]

TRAINERS: Registry[Trainer] = Registry("training method")


@dataclass(frozen=True)
class StepOutput:
    """What one training batch produced.

    Attributes:
        loss: The scalar loss that was (or is to be) minimized, attached to the graph in `loss`.
        logits: (B, K) logits on the clean batch, when the method computed them, else None.
        adv_logits: (B, K) logits on the perturbed batch (adversarial or noisy), else None.
    """

    loss: Tensor
    logits: Tensor | None = None
    adv_logits: Tensor | None = None


class Trainer(ABC):
    """Base class of every training method.

    Class attributes say how the shared loop treats a method: `adversarial` methods need an eps
    and get the robust check each epoch; `keep_best` methods keep the checkpoint of highest
    held-out robust accuracy (early stopping); `default_schedule` is the learning-rate schedule
    its paper used.
    """

    name: ClassVar[str]
    adversarial: ClassVar[bool] = True
    keep_best: ClassVar[bool] = False
    default_schedule: ClassVar[str] = "piecewise"

    @abstractmethod
    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """The training loss on a batch `x` (B, C, H, W) in [0, 1] with labels `y` (B,); model in train mode."""

    def step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        generator: torch.Generator | None = None,
        state: dict[str, Tensor] | None = None,
    ) -> StepOutput:
        """Train on one batch: one loss, one backward pass, one optimizer step.

        Args:
            model: The model being trained, in train mode.
            optimizer: Its optimizer.
            x: (B, C, H, W) inputs in [0, 1], already augmented.
            y: (B,) labels.
            threat: The threat model of this step (its eps follows the ramp-up).
            generator: Source of the method's randomness.
            state: Tensors a method carries from batch to batch (saved in checkpoints).
        """
        out = self.loss(model, x, y, threat, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        return StepOutput(out.loss.detach(), _detach(out.logits), _detach(out.adv_logits))

    def settings(self) -> dict[str, Any]:
        """The constructor's hyperparameters by name (modules are named by their class), for model cards."""
        params = inspect.signature(type(self).__init__).parameters
        values = {name: getattr(self, name) for name in params if name != "self" and hasattr(self, name)}
        return {k: type(v).__name__ if isinstance(v, nn.Module) else v for k, v in values.items()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()
