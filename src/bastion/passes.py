"""Run a model the way an attack needs it (eval mode, frozen parameters), and count its passes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bastion.outputs import logits_of

__all__ = ["Cost", "PassCount", "PassCounter", "attack_mode", "counting_passes", "measuring", "model_device_dtype",
           "uncounted"]


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode with parameters that need no gradient; restore both afterwards.

    Attacks differentiate with respect to the input only: freezing the parameters saves the
    weight-gradient work of every backward pass, and eval mode fixes dropout and batch-norm.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@dataclass(frozen=True)
class PassCount:
    """Forward and backward passes through a model: calls, and samples summed over calls."""

    forward: int = 0
    backward: int = 0
    forward_samples: int = 0
    backward_samples: int = 0

    def __add__(self, other: PassCount) -> PassCount:
        return PassCount(
            self.forward + other.forward,
            self.backward + other.backward,
            self.forward_samples + other.forward_samples,
            self.backward_samples + other.backward_samples,
        )

    def __sub__(self, other: PassCount) -> PassCount:
        return PassCount(
            self.forward - other.forward,
            self.backward - other.backward,
            self.forward_samples - other.forward_samples,
            self.backward_samples - other.backward_samples,
        )


class PassCounter(nn.Module):
    """Wraps a model and counts its forward passes, and the backward passes through its output.

    The counts come from the calls themselves, so an attack cannot misreport its cost.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Zero the counts."""
        self.forward_calls = self.backward_calls = 0
        self.forward_samples = self.backward_samples = 0

    @property
    def count(self) -> PassCount:
        """The passes so far."""
        return PassCount(self.forward_calls, self.backward_calls, self.forward_samples, self.backward_samples)

    def forward(self, x: Tensor) -> Tensor:
        """Run the wrapped model and count the pass (and its backward, if one follows)."""
        out = logits_of(self.model(x))  # a raw ModelOutput-returning model works in every attack
        batch = int(x.shape[0])
        self.forward_calls += 1
        self.forward_samples += batch
        if out.requires_grad:

            def on_backward(grad: Tensor) -> None:
                self.backward_calls += 1
                self.backward_samples += batch

            out.register_hook(on_backward)  # type: ignore[no-untyped-call]
        return out


class _HookCount:
    """Counts kept by `counting_passes`, read as a `PassCount` once the block ends."""

    def __init__(self) -> None:
        self.calls = [0, 0]
        self.samples = [0, 0]

    @property
    def count(self) -> PassCount:
        return PassCount(self.calls[0], self.calls[1], self.samples[0], self.samples[1])


_PAUSED = [0]
_OPEN: list[_HookCount] = []  # the `counting_passes` blocks now open, innermost last


@contextmanager
def uncounted() -> Iterator[None]:
    """Passes made within the block are not counted by `counting_passes` (work another process counts)."""
    _PAUSED[0] += 1
    try:
        yield
    finally:
        _PAUSED[0] -= 1


@contextmanager
def counting_passes(model: nn.Module) -> Iterator[_HookCount]:
    """Count every forward pass through `model`, and every backward pass through its output, within the block.

    Unlike `PassCounter`, the model is not wrapped (forward hooks do the counting), so code that
    inspects the model's type (a defense, an ensemble) sees the model itself. Passes made through
    views of the model that call it (BPDA, EOT) are counted too.
    """
    counts = _HookCount()

    def on_forward(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if _PAUSED[0]:
            return
        batch = int(inputs[0].shape[0]) if inputs and isinstance(inputs[0], Tensor) and inputs[0].dim() else 1
        counts.calls[0] += 1
        counts.samples[0] += batch
        if isinstance(output, Tensor) and output.requires_grad:

            def on_backward(grad: Tensor) -> None:
                counts.calls[1] += 1
                counts.samples[1] += batch

            output.register_hook(on_backward)  # type: ignore[no-untyped-call]

    handle = model.register_forward_hook(on_forward)
    _OPEN.append(counts)
    try:
        yield counts
    finally:
        _OPEN.remove(counts)
        handle.remove()


class Cost:
    """The passes and seconds spent within a `measuring` block (read live inside it, fixed once it ends)."""

    def __init__(self, counts: _HookCount) -> None:
        self._counts, self._start, self._begun = counts, counts.count, time.perf_counter()
        self._end: tuple[PassCount, float] | None = None

    @property
    def passes(self) -> PassCount:
        """The passes counted since the block began."""
        return self._end[0] if self._end else self._counts.count - self._start

    @property
    def seconds(self) -> float:
        """The wall-clock seconds since the block began."""
        return self._end[1] if self._end else time.perf_counter() - self._begun

    def close(self) -> None:
        """Fix the cost at what it is now."""
        self._end = (self.passes, self.seconds)


@contextmanager
def measuring(model: nn.Module) -> Iterator[Cost]:
    """The passes and seconds a block spends, by the count of the innermost open `counting_passes` block.

    Inside an evaluation stage that is the runner's count of the classifier, so what a part of a
    stage spends (an attack's row) is counted exactly as the stage's total is, and the parts add up
    to the whole. With no block open, the passes through `model` are counted instead.
    """
    if _OPEN:
        cost = Cost(_OPEN[-1])
        try:
            yield cost
        finally:
            cost.close()
        return
    with counting_passes(model) as counts:
        cost = Cost(counts)
        try:
            yield cost
        finally:
            cost.close()


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a model's first parameter or buffer (CPU float32 if it has none)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32
