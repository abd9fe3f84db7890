"""Spatial robustness: the worst rotation and translation within bounds (Engstrom et al., ICML 2019).

"Exploring the Landscape of Spatial Robustness" (arXiv:1712.02779) attacks a classifier with a
rotation by at most `max_angle` degrees and a shift by at most `max_translation` pixels per axis,
found by exhaustive grid search (their Section 3, 31 angles x 5 x 5 shifts) or by first-order
steps on the transformation parameters (projected gradient ascent on (angle, tx, ty)). These are no
Lp-ball attacks, so they do not implement the `Attack` contract: they have their own registry,
`SPATIAL_ATTACKS`, and return a `SpatialResult` with the per-point worst transformation.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import final

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.passes import PassCount, PassCounter, attack_mode
from bastion.registry import Registry
from bastion.transforms import rotate_translate

__all__ = ["SPATIAL_ATTACKS", "SpatialAttack", "SpatialBounds", "SpatialGrid", "SpatialPGD", "SpatialResult"]


@dataclass(frozen=True)
class SpatialBounds:
    """The transformations allowed: |angle| <= max_angle degrees, |tx|, |ty| <= max_translation pixels."""

    max_angle: float = 30.0
    max_translation: float = 3.0

    def __post_init__(self) -> None:
        for name in ("max_angle", "max_translation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")

    def scale(self, like: Tensor) -> Tensor:
        """(3,) half-widths of the box of (angle, tx, ty), on `like`'s device and dtype."""
        values = [float(self.max_angle), float(self.max_translation), float(self.max_translation)]
        return torch.tensor(values, device=like.device, dtype=like.dtype)

    def contains(self, params: Tensor, tol: float = 1e-5) -> Tensor:
        """Per-row mask: the (B, 3) parameters lie inside the bounds."""
        return (params.abs() <= self.scale(params) + tol).all(dim=1)

    def describe(self) -> str:
        """Short text such as "rotation <= 30 deg, translation <= 3 px"."""
        return f"rotation <= {self.max_angle:g} deg, translation <= {self.max_translation:g} px"


@dataclass(frozen=True)
class SpatialResult:
    """The worst transformation found for each point of a batch.

    Attributes:
        params: (B, 3) angle (degrees), tx, ty (pixels) of each point's worst case.
        x_adv: The transformed images.
        success: (B,) True where the prediction on `x_adv` is wrong.
        predictions: (B,) the model's labels for `x_adv`.
        loss: (B,) cross-entropy at the worst case.
        passes: Forward and backward passes spent.
        seconds: Wall time.
    """

    params: Tensor
    x_adv: Tensor
    success: Tensor
    predictions: Tensor
    loss: Tensor
    passes: PassCount
    seconds: float

    @property
    def accuracy(self) -> float:
        """Share of the batch still classified correctly under its worst transformation."""
        return 1.0 - float(self.success.float().mean()) if self.success.numel() else 0.0


SPATIAL_ATTACKS: Registry[SpatialAttack] = Registry("spatial attack")


class _Best:
    """Per-point running worst case: a misclassifying transformation beats any other, then higher loss."""

    def __init__(self, x: Tensor) -> None:
        self.params = torch.zeros(len(x), 3, device=x.device, dtype=x.dtype)
        self.wrong = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.loss = torch.full((len(x),), -float("inf"), device=x.device, dtype=x.dtype)

    def update(self, params: Tensor, logits: Tensor, y: Tensor) -> None:
        loss = F.cross_entropy(logits, y, reduction="none").detach().to(self.loss.dtype)
        wrong = logits.argmax(dim=1) != y
        better = (wrong & ~self.wrong) | ((wrong == self.wrong) & (loss > self.loss))
        self.params = torch.where(better[:, None], params.detach(), self.params)
        self.wrong, self.loss = self.wrong | wrong, torch.where(better, loss, self.loss)


class SpatialAttack(ABC):
    """Base of the spatial attacks: hyperparameters in the constructor, model and data at call time.

    Args:
        padding_mode: What fills the area moved in from outside the image: "zeros" (black, as in the
            paper), "border" or "reflection".
    """

    name: str = "spatial"

    def __init__(self, padding_mode: str = "zeros") -> None:
        if padding_mode not in ("zeros", "border", "reflection"):
            raise InputError(f"padding_mode must be zeros, border or reflection, got {padding_mode!r}")
        self.padding_mode = padding_mode

    def transform(self, x: Tensor, params: Tensor) -> Tensor:
        """Apply the (B, 3) (angle, tx, ty) to the images `x`."""
        return rotate_translate(x, params[:, 0], params[:, 1], params[:, 2], padding_mode=self.padding_mode)

    @abstractmethod
    def search(self, model: nn.Module, x: Tensor, y: Tensor, bounds: SpatialBounds,
               generator: torch.Generator | None) -> Tensor:
        """Return the (B, 3) worst-case parameters found, inside `bounds`."""

    @final
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, bounds: SpatialBounds | None = None, *,
                 generator: torch.Generator | None = None) -> SpatialResult:
        """Find each point's worst rotation and translation within `bounds` (default ±30 deg, ±3 px)."""
        bounds = bounds or SpatialBounds()
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 4:
            raise InputError("x must be a floating-point tensor of shape (B, C, H, W)")
        if not isinstance(y, Tensor) or y.shape != x.shape[:1]:
            raise InputError(f"y must be a tensor of {x.shape[0]} labels")
        start = time.perf_counter()
        x = x.detach()
        with attack_mode(model):
            counter = PassCounter(model)
            params = self.search(counter, x, y, bounds, generator).detach().to(x.dtype)
            scale = bounds.scale(params)
            params = torch.maximum(torch.minimum(params, scale), -scale)  # never trust the subclass
            with torch.no_grad():
                x_adv = self.transform(x, params)
                logits = counter(x_adv)
        return SpatialResult(params=params, x_adv=x_adv, success=logits.argmax(1) != y,
                             predictions=logits.argmax(1), loss=F.cross_entropy(logits, y, reduction="none"),
                             passes=counter.count, seconds=time.perf_counter() - start)

    def settings(self) -> dict[str, object]:
        """The hyperparameters by name, for reports."""
        return dict(vars(self))


def _grid_values(limit: float, count: int, like: Tensor) -> Tensor:
    if limit == 0 or count == 1:
        return torch.zeros(1, device=like.device, dtype=like.dtype)
    return torch.linspace(-limit, limit, count, device=like.device, dtype=like.dtype)


@SPATIAL_ATTACKS.register("spatial-grid")
class SpatialGrid(SpatialAttack):
    """Exhaustive grid search over (angle, tx, ty) (Engstrom et al., 2019, Section 3: "grid search").

    Every image is classified under every transformation of the grid, many transformations per
    forward pass; each point keeps a misclassifying transformation if there is one (the highest loss
    among those), else the highest-loss one. An odd count per axis puts the identity on the grid.

    Args:
        angles: Grid values of the angle in [-max_angle, max_angle] (31 in the paper).
        translations: Grid values of each shift in [-max_translation, max_translation] (5 in the paper).
        max_batch: Transformed images per forward pass.
        padding_mode: See `SpatialAttack`.
    """

    name = "spatial-grid"

    def __init__(self, angles: int = 31, translations: int = 5, max_batch: int = 4096,
                 padding_mode: str = "zeros") -> None:
        super().__init__(padding_mode)
        for key, value in (("angles", angles), ("translations", translations), ("max_batch", max_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{key} must be an integer >= 1, got {value!r}")
        self.angles, self.translations, self.max_batch = angles, translations, max_batch

    def grid(self, bounds: SpatialBounds, like: Tensor) -> Tensor:
        """(G, 3) every (angle, tx, ty) of the grid."""
        a = _grid_values(bounds.max_angle, self.angles, like)
        t = _grid_values(bounds.max_translation, self.translations, like)
        return torch.cartesian_prod(a, t, t).reshape(-1, 3)

    def search(self, model: nn.Module, x: Tensor, y: Tensor, bounds: SpatialBounds,
               generator: torch.Generator | None) -> Tensor:
        """Classify every point under every grid transformation; keep each point's worst."""
        grid, best, n = self.grid(bounds, x), _Best(x), len(x)
        chunk = max(1, self.max_batch // max(n, 1))
        with torch.no_grad():
            for start in range(0, len(grid), chunk):
                g = grid[start:start + chunk]
                params = g.repeat_interleave(n, dim=0)  # (len(g) * n, 3), grid-major
                logits = model(self.transform(x.repeat(len(g), 1, 1, 1), params))
                for k in range(len(g)):
                    rows = slice(k * n, (k + 1) * n)
                    best.update(params[rows], logits[rows], y)
        return best.params


@SPATIAL_ATTACKS.register("spatial-pgd")
class SpatialPGD(SpatialAttack):
    """First-order attack on the transformation parameters (Engstrom et al., 2019, Section 3).

    Projected gradient ascent of the cross-entropy on u = (angle / max_angle, tx / max_t, ty / max_t)
    in the box [-1, 1]^3: u <- clip(u + step * sign(grad_u)), from a uniform random start (and the
    identity is always tried first), differentiating through bilinear resampling. Each point keeps the
    worst iterate of any restart.

    Args:
        steps: Gradient steps per restart.
        restarts: Random starts.
        rel_step: Step size as a fraction of each half-width.
        padding_mode: See `SpatialAttack`.
    """

    name = "spatial-pgd"

    def __init__(self, steps: int = 50, restarts: int = 1, rel_step: float = 0.1, padding_mode: str = "zeros") -> None:
        super().__init__(padding_mode)
        for key, value in (("steps", steps), ("restarts", restarts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{key} must be an integer >= 1, got {value!r}")
        if not 0 < rel_step <= 2:
            raise InputError(f"rel_step must lie in (0, 2], got {rel_step!r}")
        self.steps, self.restarts, self.rel_step = steps, restarts, rel_step

    def search(self, model: nn.Module, x: Tensor, y: Tensor, bounds: SpatialBounds,
               generator: torch.Generator | None) -> Tensor:
        """Signed gradient ascent on the normalized parameters, with restarts; keep each point's worst iterate."""
        scale, best = bounds.scale(x), _Best(x)
        with torch.no_grad():
            identity = torch.zeros(len(x), 3, device=x.device, dtype=x.dtype)
            best.update(identity, model(x), y)
        for _ in range(self.restarts):
            device = generator.device if generator is not None else x.device
            u = torch.rand(len(x), 3, generator=generator, device=device, dtype=x.dtype).to(x.device) * 2 - 1
            for step in range(self.steps + 1):
                u.requires_grad_(True)
                logits = model(self.transform(x, u * scale))
                best.update(u * scale, logits, y)
                if step == self.steps:
                    break
                loss = F.cross_entropy(logits, y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, u)
                u = (u.detach() + self.rel_step * grad.sign()).clamp(-1.0, 1.0)
        return best.params
