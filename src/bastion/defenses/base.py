"""The defense contract: an `nn.Module` that also declares how an adaptive attacker gets through it.

Every defense states whether its forward pass is differentiable, whether it is random, and a
differentiable approximation for BPDA (Athalye, Carlini & Wagner, ICML 2018, arXiv:1802.00420,
section 4.1). `Defended` composes defenses with a model in the order given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bastion.registry import Registry

__all__ = ["DEFENSES", "Defended", "Defense", "find_defenses", "shattered"]

DEFENSES: Registry[Defense] = Registry("defense")


class Defense(nn.Module):
    """Base class of every defense: an input (or output) transform with an attack recipe.

    Attributes:
        stage: "input" (applied to images before the model), "output" (applied to the model's
            logits) or "model" (a whole classifier, e.g. an ensemble).
        differentiable: Whether autograd through `forward` gives useful gradients.
        random: Whether `forward` draws randomness (attack it with EOT).
        bpda: Name of the backward approximation `approx` implements ("identity", "gaussian", ...).
    """

    stage: ClassVar[str] = "input"
    differentiable: bool = False
    random: bool = False
    bpda: str = "identity"

    def approx(self, x: Tensor) -> Tensor:
        """A differentiable stand-in for `forward`, used by BPDA's backward pass (default: the identity)."""
        return x

    def settings(self) -> dict[str, Any]:
        """Hyperparameters by name, for reports (override where the constructor stores more)."""
        return {}

    def reseed(self, seed: int) -> None:
        """Restart the defense's own random draws from `seed` (a random defense with a generator of its own).

        An evaluation reseeds before each chunk of points, so the draws a point meets do not depend
        on which points the same process saw before (`bastion.evaluate.shards`). Nothing to do here.
        """

    def describe(self) -> dict[str, Any]:
        """Name, settings and the declared attack recipe, for the report."""
        return {
            "name": getattr(self, "name", type(self).__name__),
            "settings": self.settings(),
            "stage": self.stage,
            "differentiable": self.differentiable,
            "random": self.random,
            "bpda": self.bpda,
        }

    def extra_repr(self) -> str:
        """The settings, shown by print(model)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.settings().items())


class _Shattered(torch.autograd.Function):
    """Runs a non-differentiable function; its gradient is zero, as for torch.round (shattered gradients)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:  # noqa: D102
        with torch.no_grad():
            return fn(x.detach())

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return torch.zeros_like(grad), None


def shattered(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """`fn(x)` computed outside autograd, attached to the graph with a zero gradient.

    A codec such as JPEG has no gradient; frameworks would give none, and attacks then stall. Zero
    keeps the graph connected (attacks run and fail, as they do against the real defense) and is
    what BPDA replaces.
    """
    out: Tensor = _Shattered.apply(x, fn)  # type: ignore[no-untyped-call]
    return out


class Defended(nn.Module):
    """A model behind defenses: input defenses in the order given, the model, then output defenses.

    Args:
        defenses: Defense modules; each one's `stage` says where it goes.
        model: Maps images in [0, 1] to logits.

    Example:
        >>> defended = Defended([JPEG(quality=75), Median(size=3)], model)
    """

    def __init__(self, defenses: Sequence[Defense], model: nn.Module) -> None:
        super().__init__()
        self.inputs = nn.ModuleList([d for d in defenses if d.stage == "input"])
        self.outputs = nn.ModuleList([d for d in defenses if d.stage == "output"])
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """Defend `x` (B, C, H, W), classify it, post-process the logits."""
        for defense in self.inputs:
            x = defense(x)
        out: Tensor = self.model(x)
        for defense in self.outputs:
            out = defense(out)
        return out


def find_defenses(model: nn.Module) -> list[Defense]:
    """Every `Defense` inside `model` (itself included), in module order."""
    return [m for m in model.modules() if isinstance(m, Defense)]
