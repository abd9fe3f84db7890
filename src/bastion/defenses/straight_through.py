"""Straight-through gradients for the non-differentiable operations found inside any model.

A model that rounds, quantizes, casts to integers or detaches its input inside `forward` (not as a
declared `Defense`) shatters its gradients, and plain gradient attacks stall. BPDA (Athalye,
Carlini & Wagner, ICML 2018, arXiv:1802.00420, section 4.1) replaces each such operation f by the
identity in the backward pass: the straight-through estimator (Bengio, Léonard & Courville, 2013,
arXiv:1308.3432). `StraightThrough` finds those operations by itself: a
`torch.overrides.TorchFunctionMode` intercepts them while the model runs, keeps the real operation's
value (the logits stay bit-identical) and gives the gradient of the identity. Only operations whose
input requires grad are touched, so the model's own constant computations are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from bastion.passes import attack_mode

__all__ = ["StraightThrough", "replace_gradient", "straight_through_ops"]

_ROUNDING = ("round", "floor", "ceil", "trunc", "fix", "sign", "sgn")
_INT_CASTS = ("to", "type", "long", "int", "short", "char", "byte")

#: The operations replaced by the identity in the backward pass, by the name the report gives them.
_IDENTITY: dict[Any, str] = {
    **{getattr(torch, name): name for name in _ROUNDING},
    **{getattr(Tensor, name): name for name in _ROUNDING},
    torch.fake_quantize_per_tensor_affine: "fake-quantize",
    torch.fake_quantize_per_channel_affine: "fake-quantize",
    torch.detach: "detach",
    Tensor.detach: "detach",
    Tensor.data.__get__: "detach",  # type: ignore[attr-defined]
}
_INPLACE: dict[Any, str] = {getattr(Tensor, f"{name}_"): name for name in _ROUNDING}
#: Rounded divisions, replaced in the backward pass by the true division (the BPDA approximation).
_DIVISION = {torch.floor_divide, Tensor.floor_divide, Tensor.__floordiv__}
_CASTS = {getattr(Tensor, name) for name in _INT_CASTS}


class _Replace(torch.autograd.Function):
    """The value of `value`, the gradient of `approx` (both of one shape)."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, approx: Tensor) -> Tensor:  # noqa: D102
        ctx.dtype = approx.dtype
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:  # noqa: D102
        return None, grad.to(ctx.dtype)


class _InplaceIdentity(torch.autograd.Function):
    """`fn` applied in place to `x`, with the gradient of the identity."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, fn: Callable[[Tensor], Any]) -> Tensor:  # noqa: D102
        fn(x)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return grad, None


def replace_gradient(value: Tensor, approx: Tensor) -> Tensor:
    """A tensor equal to `value` (bit for bit) whose gradient flows to `approx` instead (BPDA's combination).

    Args:
        value: The real output, any shape.
        approx: A differentiable stand-in of the same shape.
    """
    out: Tensor = _Replace.apply(value.detach(), approx)  # type: ignore[no-untyped-call]
    return out


def _graded(x: object) -> TypeGuard[Tensor]:
    return isinstance(x, Tensor) and x.requires_grad and x.is_floating_point() and torch.is_grad_enabled()


def _in_place(name: str) -> bool:
    """Whether the torch function called `name` works in place (`clamp_`, `__iadd__`)."""
    if name.startswith("__"):
        return name.startswith("__i") and name not in ("__index__", "__int__", "__invert__", "__init__", "__iter__")
    return name.endswith("_")


def _swap(obj: Any, table: dict[int, tuple[Tensor, Tensor]]) -> Any:
    """`obj` with every tracked integer tensor replaced by its float source (through tuples, lists and dicts)."""
    if isinstance(obj, Tensor):
        entry = table.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else obj
    if isinstance(obj, tuple | list):
        return type(obj)(_swap(o, table) for o in obj)
    if isinstance(obj, dict):
        return {k: _swap(v, table) for k, v in obj.items()}
    return obj


class _Mode(TorchFunctionMode):
    """Intercepts the non-differentiable operations of one forward pass and records their names."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.paused = 0
        # Integer tensors cast from a float that requires grad: id -> (the tensor, its float source).
        self.ints: dict[int, tuple[Tensor, Tensor]] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        x = args[0] if args else None
        active = not self.paused and "out" not in kwargs
        if active and func in _INPLACE and _graded(x):
            self._note(_INPLACE[func])
            return _InplaceIdentity.apply(x, lambda t: func(t, *args[1:], **kwargs))  # type: ignore[no-untyped-call]
        value = func(*args, **kwargs)
        if not active or not isinstance(value, Tensor):
            return value
        if self.ints:
            approx = self._approx(func, args, kwargs)
            if approx is not None:
                return self._through_int(value, approx)
        if not _graded(x):
            return value
        name, approx = _IDENTITY.get(func), x
        rounding = kwargs.get("rounding_mode") if func in (torch.div, Tensor.div) else "floor" * (func in _DIVISION)
        if rounding:
            other = args[1] if len(args) > 1 else kwargs.get("other")
            if other is None:
                return value
            name, approx = f"{rounding}-divide", torch.div(x, other)
        if name is not None and approx.shape == value.shape:
            self._note(name)
            return replace_gradient(value, approx)
        if func in _CASTS and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
            self.ints[id(value)] = (value, x)
        return value

    def _approx(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
        """`func` computed on the float sources of its tracked integer arguments; None where none is tracked."""
        name = getattr(func, "__name__", "")
        # Never in place (it would change the float source the model may still use), nor a `*_like` factory.
        if _in_place(name) or name.endswith("_like"):
            return None
        swapped = _swap(args, self.ints)
        if all(a is b for a, b in zip(swapped, args, strict=True)):
            return None
        try:
            approx = func(*swapped, **_swap(kwargs, self.ints))
        except (RuntimeError, TypeError, IndexError, ValueError):  # integer-only (bit shifts, indexing): still cut
            return None
        return approx if isinstance(approx, Tensor) and approx.is_floating_point() and approx.requires_grad else None

    def _through_int(self, value: Tensor, approx: Tensor) -> Tensor:
        if value.shape != approx.shape:
            return value
        if not value.is_floating_point():
            self.ints[id(value)] = (value, approx)
            return value
        self._note("integer cast")
        return replace_gradient(value, approx)

    def _note(self, name: str) -> None:
        if name not in self.found:
            self.found.append(name)


class StraightThrough(nn.Module):
    """A view of `model` whose non-differentiable operations have straight-through gradients (BPDA, section 4.1).

    The forward value is the model's own, bit for bit. In the backward pass, rounding (`round`,
    `floor`, `ceil`, `trunc`, `sign`, their method and in-place forms), fake quantization, `detach`
    (and `.data`) become the identity, rounded divisions the true division, and a cast to an
    integer type that comes back to a float gets the gradient of the same computation on the float
    (Athalye, Carlini & Wagner, ICML 2018, arXiv:1802.00420; Bengio et al., 2013, arXiv:1308.3432).

    Args:
        model: Any model.
        skip: Modules inside which nothing is intercepted (e.g. declared defenses that BPDA
            already approximates).
    """

    def __init__(self, model: nn.Module, skip: Iterable[nn.Module] = ()) -> None:
        super().__init__()
        self.model = model
        self.skip = list(skip)

    def forward(self, x: Tensor) -> Tensor:
        """The model's output, with straight-through gradients at its non-differentiable operations."""
        with self.intercepting():
            out: Tensor = self.model(x)
        return out

    @contextmanager
    def intercepting(self) -> Iterator[list[str]]:
        """Intercept within the block; yields the names of the operations intercepted so far."""
        mode = _Mode()
        handles: list[RemovableHandle] = []
        for module in self.skip:
            # Paused from before the first pre-hook to after the last hook, BPDA's included (it prepends its hooks).
            handles.append(module.register_forward_pre_hook(lambda *_: _pause(mode, 1), prepend=True))
            handles.append(module.register_forward_hook(lambda *_: _pause(mode, -1), always_call=True))
        try:
            with mode:
                yield mode.found
        finally:
            for handle in handles:
                handle.remove()


def _pause(mode: _Mode, step: int) -> None:
    mode.paused += step


def straight_through_ops(model: nn.Module, x: Tensor, skip: Iterable[nn.Module] = ()) -> list[str]:
    """The non-differentiable operations on the gradient path of `model` at `x`, found by one probe forward pass.

    The model runs in eval mode with frozen parameters (as attacks run it), so only operations on
    the input's gradient path count.

    Args:
        model: Any model.
        x: A probe batch, shape (B, ...) (a few points of the data attacked).
        skip: Modules whose operations are not counted (see `StraightThrough`).
    """
    view, x = StraightThrough(model, skip), x.detach().clone().requires_grad_(True)
    with attack_mode(model), torch.enable_grad(), view.intercepting() as found:
        model(x)
    return list(found)
