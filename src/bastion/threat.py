"""Threat models: the set of perturbations an attacker may use.

A `ThreatModel` is a norm ball of radius `eps` around the input, intersected with the input box
(pixels in [0, 1]). Norms are objects (Foolbox 3's split of *what* an attack needs from *how* it
searches), so one attack loop serves Linf and L2 alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from bastion.errors import InputError

__all__ = ["L0", "L2", "Linf", "Norm", "ThreatModel", "get_norm", "parse_eps"]

_TINY = 1e-12


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B,) tensor so that it broadcasts against a (B, ...) tensor."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def _uniform(like: Tensor, generator: torch.Generator | None, shape: tuple[int, ...] | None = None) -> Tensor:
    """U[0, 1) noise (shaped like `like` by default), drawn on the generator's device, moved to `like`'s."""
    device = generator.device if generator is not None else like.device
    size = like.shape if shape is None else shape
    return torch.rand(size, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _normal(like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


@runtime_checkable
class Norm(Protocol):
    """What an attack needs to know about an Lp norm."""

    name: str

    def measure(self, delta: Tensor) -> Tensor:
        """Per-sample norm of a (B, ...) perturbation, shape (B,)."""
        ...

    def project(self, delta: Tensor, eps: float) -> Tensor:
        """Euclidean projection of each perturbation onto the eps-ball."""
        ...

    def ascent(self, grad: Tensor) -> Tensor:
        """Steepest-ascent direction of unit norm for a (B, ...) gradient."""
        ...

    def random_init(self, like: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
        """A perturbation drawn uniformly from the eps-ball, shaped like `like`."""
        ...


class Linf:
    """The L-infinity norm: the largest absolute change of any single pixel."""

    name = "linf"

    def measure(self, delta: Tensor) -> Tensor:
        """Per-sample max |delta|."""
        return _flat(delta).abs().amax(dim=1)

    def project(self, delta: Tensor, eps: float) -> Tensor:
        """Clamp every coordinate to [-eps, eps]."""
        return delta.clamp(-eps, eps)

    def ascent(self, grad: Tensor) -> Tensor:
        """sign(grad), the steepest ascent direction under Linf (FGSM, Goodfellow et al., 2015)."""
        return torch.sign(grad)

    def random_init(self, like: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
        """Uniform in the cube [-eps, eps]^d (Madry et al., 2018)."""
        return (2.0 * _uniform(like, generator) - 1.0) * eps

    def __repr__(self) -> str:
        return "Linf()"


class L2:
    """The Euclidean norm of the perturbation, over all pixels and channels."""

    name = "l2"

    def measure(self, delta: Tensor) -> Tensor:
        """Per-sample ||delta||_2."""
        norms: Tensor = torch.linalg.vector_norm(_flat(delta), ord=2, dim=1)
        return norms

    def project(self, delta: Tensor, eps: float) -> Tensor:
        """Rescale perturbations longer than eps back onto the sphere of radius eps."""
        norms = self.measure(delta)
        factor = torch.where(norms > eps, eps / (norms + _TINY), torch.ones_like(norms))
        return delta * _per_sample(factor, delta)

    def ascent(self, grad: Tensor) -> Tensor:
        """Grad / ||grad||_2 (zero where the gradient vanishes)."""
        return grad / _per_sample(self.measure(grad) + _TINY, grad)

    def random_init(self, like: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
        """Uniform in the d-dimensional ball: a Gaussian direction and a radius eps * u^(1/d)."""
        direction = _normal(like, generator)
        direction = direction / _per_sample(self.measure(direction) + _TINY, like)
        dim = _flat(like).shape[1]
        u = _uniform(like, generator, shape=(like.shape[0],))
        return direction * _per_sample(eps * u.pow(1.0 / dim), like)

    def __repr__(self) -> str:
        return "L2()"


def _pixels(delta: Tensor) -> Tensor:
    """(B, P) per-pixel squared change: channels (dim 1) summed for images (B, C, H, W), else per coordinate."""
    if delta.dim() >= 4:
        return delta.pow(2).sum(dim=1).reshape(delta.shape[0], math.prod(delta.shape[2:]))
    return _flat(delta).pow(2)


def _pixel_mask(per_pixel: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B, P) per-pixel tensor so that it broadcasts against `like` (over channels for images)."""
    return per_pixel.reshape(like.shape[0], 1, *like.shape[2:]) if like.dim() >= 4 else per_pixel.reshape(like.shape)


class L0:
    """The L0 "norm" of sparse attacks (one-pixel, Su et al. 2019): how many pixels changed.

    A pixel is a spatial location of an image (B, C, H, W), changed when any of its channels is;
    inputs of another rank count every coordinate as a pixel. `eps` is a pixel count (rounded down).
    """

    name = "l0"

    def measure(self, delta: Tensor) -> Tensor:
        """Per-sample number of changed pixels, as a float tensor."""
        return (_pixels(delta) > 0).sum(dim=1).to(delta.dtype if delta.is_floating_point() else torch.float32)

    def project(self, delta: Tensor, eps: float) -> Tensor:
        """Keep the floor(eps) pixels with the largest change (the Euclidean projection), zero the rest."""
        energy = _pixels(delta)
        k = int(math.floor(eps + 1e-9))
        if k >= energy.shape[1]:
            return delta
        keep = torch.zeros_like(energy, dtype=torch.bool)
        if k > 0:
            keep.scatter_(1, energy.topk(k, dim=1).indices, True)
        return delta * _pixel_mask(keep, delta).to(delta.dtype)

    def ascent(self, grad: Tensor) -> Tensor:
        """sign(grad) on the one pixel of largest gradient, zero elsewhere.

        The steepest ascent over perturbations that change one pixel by at most 1 per channel (the
        L0 unit ball intersected with the [-1, 1] box, since pixels live in [0, 1]).
        """
        return torch.sign(self.project(grad, 1.0))

    def random_init(self, like: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
        """floor(eps) distinct pixels chosen uniformly, each channel changed by U[-1, 1]."""
        pixels = _pixels(like).shape[1]
        keys = _uniform(like, generator, shape=(like.shape[0], pixels))
        noise = 2.0 * _uniform(like, generator) - 1.0
        chosen = torch.zeros_like(keys)
        k = min(int(math.floor(eps + 1e-9)), pixels)
        if k > 0:
            chosen.scatter_(1, keys.topk(k, dim=1).indices, 1.0)
        return noise * _pixel_mask(chosen, like)

    def __repr__(self) -> str:
        return "L0()"


NORMS: dict[str, Norm] = {"linf": Linf(), "l2": L2(), "l0": L0()}


def get_norm(name: str | Norm) -> Norm:
    """Look a norm up by name ("linf", "l2", "l0"); a `Norm` object passes through."""
    if not isinstance(name, str):
        return name
    key = name.strip().lower().replace("-", "").replace("_", "")
    key = {"inf": "linf", "linfinity": "linf", "2": "l2", "0": "l0"}.get(key, key)
    if key not in NORMS:
        raise InputError(f"unknown norm {name!r}; choose one of: {', '.join(NORMS)}")
    return NORMS[key]


def parse_eps(value: float | int | str) -> float:
    """Parse a perturbation budget: a number, or a fraction string such as "8/255".

    Raises:
        InputError: for text that is not a number, a negative, infinite or NaN budget.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            eps = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise InputError(f"eps must be a number or a fraction such as 8/255, got {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        eps = float(value)
    else:
        raise InputError(f"eps must be a number or a fraction string, got {type(value).__name__}")
    if math.isnan(eps) or math.isinf(eps) or eps < 0:
        raise InputError(f"eps must be a finite number >= 0, got {value!r}")
    return eps


@dataclass(frozen=True)
class ThreatModel:
    """An eps-ball in a norm, intersected with the input box.

    Args:
        norm: A `Norm` object or its name ("linf", "l2").
        eps: Radius of the ball, a float or a fraction string ("8/255").
        bounds: The valid input range; images are in [0, 1].

    Example:
        >>> threat = ThreatModel("linf", "8/255")
        >>> threat.eps
        0.03137254901960784
    """

    norm: Norm
    eps: float
    bounds: tuple[float, float] = (0.0, 1.0)

    def __init__(self, norm: str | Norm, eps: float | str, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        low, high = float(bounds[0]), float(bounds[1])
        if not low < high:
            raise InputError(f"bounds must satisfy low < high, got {bounds}")
        object.__setattr__(self, "norm", get_norm(norm))
        object.__setattr__(self, "eps", parse_eps(eps))
        object.__setattr__(self, "bounds", (low, high))

    def with_eps(self, eps: float | str) -> ThreatModel:
        """The same threat model with another radius."""
        return ThreatModel(self.norm, eps, self.bounds)

    def clip(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """Map `x_adv` into the eps-ball around `x`, then into the input box.

        Clipping to the box after the projection keeps the point in the ball for both norms: it only
        shrinks coordinates of `x_adv - x` towards zero.
        """
        delta = self.norm.project(x_adv - x, self.eps)
        return (x + delta).clamp(*self.bounds)

    def contains(self, x: Tensor, x_adv: Tensor, tol: float = 1e-6) -> Tensor:
        """Per-sample mask: `x_adv` lies in the ball (within `tol`) and in the box."""
        in_ball = self.norm.measure(x_adv - x) <= self.eps + tol
        low, high = self.bounds
        in_box = (_flat(x_adv) >= low - tol).all(dim=1) & (_flat(x_adv) <= high + tol).all(dim=1)
        return in_ball & in_box

    @classmethod
    def unbounded(
        cls, norm: str | Norm, shape: tuple[int, ...], bounds: tuple[float, float] = (0.0, 1.0)
    ) -> ThreatModel:
        """A ball as large as the input box, for minimal-norm attacks: every point of the box is inside it.

        Args:
            norm: The norm.
            shape: Shape of one input, e.g. (C, H, W).
            bounds: The input box.
        """
        norm = get_norm(norm)
        side = float(bounds[1]) - float(bounds[0])
        radius = side if norm.name == "linf" else side * math.sqrt(math.prod(shape))
        if norm.name == "l0":  # every pixel may change: H * W for (C, H, W), else every coordinate
            radius = float(math.prod(shape[1:]) if len(shape) >= 3 else math.prod(shape))
        return cls(norm, radius, bounds)

    def describe(self) -> str:
        """Short text such as "linf eps=0.3"."""
        return f"{self.norm.name} eps={self.eps:.6g}"
