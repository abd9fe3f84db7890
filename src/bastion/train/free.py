"""Free adversarial training (Shafahi et al., NeurIPS 2019): one backward pass updates weights and perturbation."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train.base import TRAINERS, StepOutput, Trainer

__all__ = ["Free"]


@TRAINERS.register("free")
class Free(Trainer):
    """Free adversarial training with minibatch replay (Shafahi et al., NeurIPS 2019, arXiv:1904.12843, alg. 1).

    Each minibatch is replayed `replays` (m) times; every replay's single backward pass gives the
    weight gradient (one optimizer step) and the input gradient, which moves the perturbation by
    eps * sign(grad). The perturbation is carried over from one minibatch to the next. An epoch
    costs about m standard epochs: the paper trains for epochs / m, so divide `--epochs` by m.

    Args:
        replays: Replays m of each minibatch (the paper: 8 on CIFAR-10, 4 on ImageNet).
        rel_step: Perturbation step as a fraction of eps (the paper: 1, i.e. a step of eps).

    Example:
        >>> out = Free(replays=8).step(model, optimizer, x, y, ThreatModel("linf", 8 / 255), state={})
    """

    name: ClassVar[str] = "free"

    def __init__(self, replays: int = 8, rel_step: float = 1.0) -> None:
        if int(replays) < 1:
            raise InputError(f"replays must be >= 1, got {replays}")
        if not rel_step > 0:
            raise InputError(f"rel_step must be > 0, got {rel_step}")
        self.replays = int(replays)
        self.rel_step = float(rel_step)

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Cross-entropy at x itself, the first replay's loss before any perturbation exists."""
        logits = model(x)
        return StepOutput(F.cross_entropy(logits, y), adv_logits=logits.detach())

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
        """Replay the batch m times, updating weights and the carried perturbation from each backward pass."""
        state = {} if state is None else state
        buffer = state.get("delta")
        if buffer is None or buffer.shape[1:] != x.shape[1:] or len(buffer) < len(x):
            buffer = torch.zeros_like(x)
        buffer = buffer.to(device=x.device, dtype=x.dtype)
        delta = buffer[: len(x)]
        loss, logits = torch.zeros((), device=x.device), None
        for _ in range(self.replays):
            x_adv = threat.clip(x, x + delta).requires_grad_(True)
            logits = model(x_adv)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            grad = x_adv.grad if x_adv.grad is not None else torch.zeros_like(x)
            with torch.no_grad():
                moved = x_adv.detach() - x + self.rel_step * threat.eps * threat.norm.ascent(grad)
                delta = threat.norm.project(moved, threat.eps)
        buffer = buffer.clone()
        buffer[: len(x)] = delta
        state["delta"] = buffer
        return StepOutput(loss.detach(), adv_logits=None if logits is None else logits.detach())
