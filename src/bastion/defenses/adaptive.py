"""Adaptive attacks as model wrappers, so that every attack benefits: BPDA, straight-through and EOT.

Wrapping the model instead of rewriting attacks means PGD, APGD, FAB and C&W all become adaptive
without a line of change (the recommendation of Tramèr, Carlini, Brendel & Madry, NeurIPS 2020,
arXiv:2002.08347: adapt the model the attack sees, keep the attack standard). Declared defenses get
their declared approximation; non-differentiable operations hidden inside the model's own forward
(rounding, detach, integer casts) are found by a probe pass and get straight-through gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from bastion.defenses.base import Defense, find_defenses
from bastion.defenses.straight_through import StraightThrough, replace_gradient, straight_through_ops
from bastion.errors import InputError

__all__ = ["BPDA", "EOT", "AdaptiveModel", "adaptive_model"]


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye, Carlini & Wagner, ICML 2018, arXiv:1802.00420, 4.1).

    The forward pass is the real model, defenses included; in the backward pass each defense that
    is not differentiable is replaced by its declared approximation g: its output keeps the value
    f(x) and takes the gradient of g(x) (`replace_gradient`).

    Args:
        model: A model containing `Defense` modules (e.g. a `Defended`).
        identity: Use the identity for every input and output defense instead of the declared
            approximations (BPDA's straight-through estimator).
    """

    def __init__(self, model: nn.Module, identity: bool = False) -> None:
        super().__init__()
        self.model = model
        self.identity = identity

    def forward(self, x: Tensor) -> Tensor:
        """The model's output, with straight-through gradients at each non-differentiable defense."""
        # Prepended, so the approximation replaces the output before any other hook sees it.
        handles: list[RemovableHandle] = [d.register_forward_hook(self._straight_through, prepend=True)
                                          for d in find_defenses(self.model) if not d.differentiable]
        try:
            out: Tensor = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        return out

    def _straight_through(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
        assert isinstance(module, Defense)  # noqa: S101 - hooks are only registered on defenses
        x = args[0]
        approx = x if self.identity and module.stage != "model" else module.approx(x)
        return replace_gradient(output, approx)


class EOT(nn.Module):
    """Expectation over Transformation (Athalye, Engstrom, Ilyas & Kwok, ICML 2018, arXiv:1707.07397).

    Runs a randomized model `n_samples` times on the batch (one stacked call) and returns the mean
    output: its gradient is the mean of the sampled gradients, the EOT estimate, and its arg max is
    the prediction of the expected classifier.

    Args:
        model: The randomized model.
        n_samples: Draws averaged per call.
    """

    def __init__(self, model: nn.Module, n_samples: int = 10) -> None:
        super().__init__()
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise InputError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        self.model = model
        self.n_samples = n_samples

    def forward(self, x: Tensor) -> Tensor:
        """Mean output over `n_samples` draws, shape (B, K)."""
        out: Tensor = self.model(x.repeat(self.n_samples, *[1] * (x.dim() - 1)))
        return out.view(self.n_samples, x.shape[0], *out.shape[1:]).mean(0)


@dataclass(frozen=True)
class AdaptiveModel:
    """The model an adaptive attack should target, and how it was adapted (for the report)."""

    module: nn.Module
    bpda: list[str] = field(default_factory=list)
    eot_samples: int = 0
    straight_through: list[str] = field(default_factory=list)

    @property
    def adapted(self) -> bool:
        """Whether anything was wrapped."""
        return bool(self.bpda) or self.eot_samples > 0 or bool(self.straight_through)

    def describe(self) -> dict[str, Any]:
        """What the attacker was given, as JSON-ready data."""
        return {"bpda": list(self.bpda), "eot_samples": self.eot_samples,
                "straight_through": list(self.straight_through)}


def adaptive_model(
    model: nn.Module, *, eot_samples: int = 10, random: bool = False, probe: Tensor | None = None
) -> AdaptiveModel:
    """Wrap `model` for adaptive attacks: BPDA for the non-differentiable defenses, straight-through, EOT if random.

    Declared defenses get their declared BPDA approximation. With a `probe`, one forward pass also
    finds the non-differentiable operations inside the model's own code (outside those defenses),
    and the view gives them straight-through gradients (`StraightThrough`); a model without any is
    not wrapped.

    Args:
        model: The (defended) model.
        eot_samples: Draws per EOT estimate.
        random: Also use EOT when no defense declares randomness (e.g. the model was seen to
            give different outputs for identical inputs).
        probe: A few inputs of the data to attack, shape (B, ...); None skips the search.
    """
    defenses = find_defenses(model)
    cut = [d for d in defenses if not d.differentiable]
    bpda = [f"{getattr(d, 'name', type(d).__name__)}:{d.bpda}" for d in cut]
    module: nn.Module = BPDA(model) if bpda else model
    found = straight_through_ops(model, probe, skip=cut) if probe is not None else []
    if found:
        module = StraightThrough(module, skip=cut)
    randomized = random or any(d.random for d in defenses)
    if randomized:
        module = EOT(module, eot_samples)
    return AdaptiveModel(module, bpda, eot_samples if randomized else 0, found)
