"""The attack contract: hyperparameters in the constructor, the model and data at call time.

`Attack.__call__` is final and never trusts the subclass: it validates the inputs, freezes the
model, counts its passes, clips whatever `perturb` returns back into the threat model, and measures
success itself (Foolbox 3's design).
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, final

import torch
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.passes import PassCount, PassCounter, attack_mode
from bastion.registry import Registry
from bastion.seeding import resolve_generator
from bastion.threat import ThreatModel

__all__ = ["ATTACKS", "Attack", "AttackResult", "check_inputs", "is_success"]

ATTACKS: Registry[Attack] = Registry("attack")


@dataclass(frozen=True)
class AttackResult:
    """What an attack found for a batch.

    Attributes:
        x_adv: Adversarial examples, same shape, dtype and device as the input; always inside the
            threat model.
        success: (B,) bool, True where the model's prediction on `x_adv` is wrong (untargeted) or
            the target (targeted).
        norms: (B,) norm of `x_adv - x` in the threat model's norm.
        predictions: (B,) the model's labels for `x_adv`.
        passes: Forward and backward passes the attack spent, final check included.
        seconds: Wall time of the call.
    """

    x_adv: Tensor
    success: Tensor
    norms: Tensor
    predictions: Tensor
    passes: PassCount
    seconds: float

    @property
    def success_rate(self) -> float:
        """Share of the batch the attack fooled."""
        return float(self.success.float().mean()) if self.success.numel() else 0.0


def is_success(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Per-sample success: misclassified (untargeted) or classified as `target` (targeted)."""
    predictions = logits.argmax(dim=1)
    return predictions != y if target is None else predictions == target


def check_inputs(x: Tensor, y: Tensor, threat: ThreatModel, target: Tensor | None = None) -> None:
    """Validate a batch at the boundary; raises `InputError` with a one-line reason."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise InputError("x must be a floating-point tensor of shape (B, ...), e.g. (B, C, H, W)")
    if not isinstance(y, Tensor) or y.shape != x.shape[:1]:
        raise InputError(f"y must be a tensor of {x.shape[0]} labels, got shape {tuple(getattr(y, 'shape', ()))}")
    if target is not None and (not isinstance(target, Tensor) or target.shape != y.shape):
        raise InputError("target must be a tensor of labels shaped like y")
    low, high = threat.bounds
    if x.numel() and (bool(torch.isnan(x).any()) or x.min() < low or x.max() > high):
        raise InputError(
            f"inputs must lie in [{low:g}, {high:g}] (got min {float(x.min()):.4g}, max {float(x.max()):.4g}); "
            "put normalization inside the model (--mean/--std), not in the data"
        )


class Attack(ABC):
    """Base class of every attack: construct with hyperparameters, call with model and data.

    Example:
        >>> attack = PGD(steps=40)
        >>> result = attack(model, x, y, ThreatModel("linf", 0.3))
        >>> result.x_adv, result.success
    """

    name: ClassVar[str]
    #: Whether `target=` is supported (ensembles that pick their own targets say no).
    supports_target: ClassVar[bool] = True
    #: Whether the attack searches for the smallest adversarial perturbation (FAB, C&W): its norms
    #: then describe the model's robustness at every radius, not just at eps.
    minimizes_norm: ClassVar[bool] = False
    #: The threat-model norms the attack works in (the contract test runs it in each).
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    #: Whether the attack only queries the model's outputs, never its gradients (the contract test counts
    #: no backward pass): a BPDA or straight-through view of the model changes nothing for it but its cost.
    query_only: ClassVar[bool] = False

    @abstractmethod
    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Search for adversarial examples for a batch; return them, shaped like `x`."""

    @final
    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> AttackResult:
        """Attack `model` on the batch `(x, y)` within `threat`.

        Args:
            model: Maps images in the threat model's bounds, shape (B, C, H, W), to logits (B, K).
            x: Clean inputs, on the model's device and in its dtype; left unchanged.
            y: (B,) true labels.
            threat: The perturbation set, in one of the attack's `norms`.
            target: (B,) target labels for a targeted attack, or None.
            generator: Source of randomness (random starts); the same seed gives the same result.
            seed: Instead of `generator`: seeds a new CPU generator.
        """
        if threat.norm.name not in self.norms:
            raise InputError(f"{self.name} works in the {' and '.join(self.norms)} threat models, "
                             f"not {threat.norm.name}")
        generator = resolve_generator(generator, seed)
        check_inputs(x, y, threat, target)
        start = time.perf_counter()
        x = x.detach()
        with attack_mode(model):
            counter = PassCounter(model)
            x_adv = self.perturb(counter, x.clone(), y, threat, target=target, generator=generator) if len(x) else x
            x_adv = threat.clip(x, x_adv.detach().to(x.dtype))
            with torch.no_grad():
                logits = counter(x_adv)
        if not bool(torch.isfinite(logits).all()):
            raise InputError("the model returned NaN or infinite logits")
        return AttackResult(
            x_adv=x_adv,
            success=is_success(logits, y, target),
            norms=threat.norm.measure(x_adv - x),
            predictions=logits.argmax(dim=1),
            passes=counter.count,
            seconds=time.perf_counter() - start,
        )

    def settings(self) -> dict[str, Any]:
        """The constructor's hyperparameters by name (scikit-learn's get_params), for reports."""
        params = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in params if name != "self" and hasattr(self, name)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"
