"""Square Attack: score-based black-box random search over square-shaped updates, Linf and L2."""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks.base import ATTACKS, Attack, is_success
from bastion.attacks.restarts import restart_survivors
from bastion.errors import InputError
from bastion.losses import cross_entropy, cw_margin
from bastion.threat import ThreatModel

__all__ = ["Square", "p_schedule"]

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # iterations of a 10,000-query run where p halves
_RESAMPLES = 10  # Linf: redraws of a window's signs that would leave the image unchanged (a wasted query)
Window = tuple[Tensor, Tensor, Tensor]


def p_schedule(p_init: float, iteration: int, n_queries: int, rescale: bool = True) -> float:
    """The piecewise-constant schedule of p, the fraction of pixels a square covers (Sec. 3 of the paper).

    p starts at `p_init` and halves after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000
    of a 10,000-query run; `rescale` maps `iteration` of an `n_queries` run onto that scale (AutoAttack).
    """
    it = int(iteration / n_queries * 10000) if rescale else iteration
    return p_init * 0.5 ** sum(it > t for t in _HALVINGS)


def _draw(high: int, size: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Integers uniform in [0, high), drawn on the generator's device, moved to `like`'s."""
    device = generator.device if generator is not None else like.device
    return torch.randint(0, high, size, generator=generator, device=device).to(like.device)


def _signs(size: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    return (2 * _draw(2, size, generator, like) - 1).to(like.dtype)


def _windows(n: int, side: int, like: Tensor, generator: torch.Generator | None) -> Window:
    """Index tensors selecting a `side` x `side` square at a uniform position per image from `t.movedim(1, -1)`."""
    h, w = like.shape[-2:]
    offsets = torch.arange(side, device=like.device)
    top = _draw(h - side + 1, (n,), generator, like)[:, None] + offsets
    left = _draw(w - side + 1, (n,), generator, like)[:, None] + offsets
    return torch.arange(n, device=like.device)[:, None, None], top[:, :, None], left[:, None, :]


def _rectangle_pulse(rows: int, cols: int) -> Tensor:
    """Nested centred rectangles weighted 1/(k+1)^2, unit L2 norm (the reference's pseudo-Gaussian bump)."""
    weights: Tensor = 1.0 / torch.arange(1, max(rows // 2, cols // 2) + 2, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum of the weights of the rectangles at distance >= d
    i = (torch.arange(rows) - rows // 2).abs()[:, None]
    j = (torch.arange(cols) - cols // 2).abs()[None, :]
    pulse = tail[torch.maximum(i, j)]
    return pulse / (_norm(pulse) + 1e-12)


@functools.lru_cache(maxsize=64)
def _meta_pulse(side: int) -> Tensor:
    """A side x side update of unit L2 norm: a positive bump over a negative one (CPU, float64, cached)."""
    eta = torch.cat([_rectangle_pulse(side // 2, side), -_rectangle_pulse(side - side // 2, side)])
    return eta / _norm(eta)


def _pulses(n: int, side: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """(n, side, side) L2 updates, each transposed with probability 1/2, as in the reference."""
    eta = _meta_pulse(side).to(device=like.device, dtype=like.dtype)
    flip = _draw(2, (n, 1, 1), generator, like).bool()
    pulses: Tensor = torch.where(flip, eta.t(), eta)
    return pulses


def _norm(t: Tensor, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> Tensor:
    norms: Tensor = torch.linalg.vector_norm(t, dim=dim, keepdim=keepdim)
    return norms


def _l2_unit(delta: Tensor) -> Tensor:
    return delta / (_norm(delta.flatten(1), 1).view(-1, *[1] * (delta.dim() - 1)) + 1e-12)


@ATTACKS.register("square")
class Square(Attack):
    """Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, arXiv:1912.00049).

    Random search (Algorithm 1) that queries only the model's scores: each iteration changes one
    square window per image, at a uniform position, of side s = round(sqrt(p * n_features / c)) (a
    fraction p of the pixels; at least 3 and odd for L2, as in the reference) with p following
    `p_schedule`, and keeps the change only if the loss decreases. Linf windows are set to x +- eps
    per channel (Algorithm 2, from vertical +-eps stripes); L2 windows receive a pseudo-Gaussian bump
    while a second window's mass moves into it, so the perturbation keeps norm eps (Algorithm 3, from
    a grid of bumps). The clean batch is queried first and the points it fools are returned as they
    are; the others are queried only until they are fooled, each at its own cost. No gradients are
    used, so the attack sees through rounding, JPEG and other gradient masking.

    Args:
        n_queries: Queries per point and restart, the initial one included.
        p_init: Initial fraction of the pixels a window covers (the paper: 0.05 Linf, 0.1 L2 for
            standard models, higher for robust ones; AutoAttack uses 0.8 for both).
        n_restarts: Runs from new random starts on the points no earlier run fooled.
        loss: Untargeted objective: "margin" (z_y - max_{j != y} z_j) or "ce" (minus cross-entropy).
            Targeted runs minimize the cross-entropy to the target, as in the paper and AutoAttack.
        rescale_schedule: Compress the 10,000-query schedule of p into `n_queries` (AutoAttack).

    Example:
        >>> result = Square(n_queries=5000)(model, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "square"
    query_only: ClassVar[bool] = True

    def __init__(
        self,
        n_queries: int = 5000,
        p_init: float = 0.8,
        n_restarts: int = 1,
        loss: str = "margin",
        rescale_schedule: bool = True,
    ) -> None:
        if int(n_queries) < 1 or int(n_restarts) < 1:
            raise InputError(f"n_queries and n_restarts must be >= 1, got {n_queries} and {n_restarts}")
        if not 0 < p_init <= 1:
            raise InputError(f"p_init must lie in (0, 1], got {p_init}")
        if loss not in ("margin", "ce"):
            raise InputError(f"unknown loss {loss!r}; choose one of: margin, ce")
        self.n_queries, self.p_init, self.n_restarts = int(n_queries), float(p_init), int(n_restarts)
        self.loss, self.rescale_schedule = loss, bool(rescale_schedule)

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
        """Run the restarts, each on the points neither the clean input nor an earlier run fooled."""
        if x.dim() != 4:
            raise InputError(f"Square attacks images shaped (B, C, H, W), got shape {tuple(x.shape)}")
        def run(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            return self._single_run(model, x[rows], y[rows], None if target is None else target[rows], threat,
                                    generator)

        with torch.no_grad():
            loss, fooled = self._score(model, x, y, target)
            return restart_survivors(x, self.n_restarts if threat.eps > 0 else 0, run, score=loss, fooled=fooled,
                                     higher_is_better=False)

    def _score(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """One query: the loss to minimize and whether the model is fooled."""
        logits = model(x)
        if target is not None:
            loss = cross_entropy(logits, target)
        else:
            loss = -cw_margin(logits, y) if self.loss == "margin" else -cross_entropy(logits, y)
        return loss, is_success(logits, y, target)

    def _single_run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        target: Tensor | None,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Algorithm 1: per point the best iterate, its loss and whether it fools the model."""
        c, h, w = x.shape[1], x.shape[-2], x.shape[-1]
        x_best = self._initial_point(x, threat, generator)
        loss_best, fooled = self._score(model, x_best, y, target)
        propose = self._propose_linf if threat.norm.name == "linf" else self._propose_l2
        # The points still robust, kept compact: they are gathered again only when some are fooled.
        rows = (~fooled).nonzero().squeeze(1)
        x_a, best_a, loss_a, y_a = x[rows], x_best[rows], loss_best[rows], y[rows]
        target_a = None if target is None else target[rows]
        for i in range(self.n_queries - 1):
            if rows.numel() == 0:
                break
            p = p_schedule(self.p_init, i, self.n_queries, self.rescale_schedule)
            side = max(round(math.sqrt(p * x[0].numel() / c)), 1)
            x_new = propose(x_a, best_a, min(side, h, w), threat, generator)
            loss, success = self._score(model, x_new, y_a, target_a)
            better = success | (loss < loss_a)  # the update is kept only if the loss improves
            best_a = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x_new, best_a)
            loss_a = torch.where(better, loss, loss_a)
            if bool(success.any()):
                x_best[rows], loss_best[rows], fooled[rows] = best_a, loss_a, success
                keep = ~success
                rows, x_a, best_a, loss_a, y_a = rows[keep], x_a[keep], best_a[keep], loss_a[keep], y_a[keep]
                target_a = None if target_a is None else target_a[keep]
        x_best[rows], loss_best[rows] = best_a, loss_a
        return x_best, loss_best, fooled

    @staticmethod
    def _initial_point(x: Tensor, threat: ThreatModel, generator: torch.Generator | None) -> Tensor:
        """Linf: vertical stripes of +-eps (Algorithm 2, line 2). L2: a grid of +-bumps of norm eps (Algorithm 3)."""
        n, c, h, w = x.shape[0], x.shape[1], x.shape[-2], x.shape[-1]
        if threat.norm.name == "linf":
            return (x + threat.eps * _signs((n, c, 1, w), generator, x)).clamp(*threat.bounds)
        side = max(min(h, w) // 5, 1)
        top, left = (h - h // side * side) // 2, (w - w // side * side) // 2
        delta = torch.zeros_like(x)
        for row in range(top, top + h // side * side, side):
            for col in range(left, left + w // side * side, side):
                bumps = _pulses(n, side, x, generator)[:, None] * _signs((n, c, 1, 1), generator, x)
                delta[..., row : row + side, col : col + side] = bumps
        return (x + threat.eps * _l2_unit(delta)).clamp(*threat.bounds)

    @staticmethod
    def _propose_linf(
        x: Tensor, x_best: Tensor, side: int, threat: ThreatModel, generator: torch.Generator | None
    ) -> Tensor:
        """Algorithm 2: set one window per image to x +- eps (one sign per channel)."""
        n, c = x.shape[:2]
        window = _windows(n, side, x, generator)
        x_window, best_window = x.movedim(1, -1)[window], x_best.movedim(1, -1)[window]  # (n, s, s, c)
        signs = _signs((n, c), generator, x)
        for _ in range(_RESAMPLES):
            new_window = (x_window + threat.eps * signs[:, None, None, :]).clamp(*threat.bounds)
            # As in the reference: redraw the signs of windows that would not change the image (only the
            # window can differ from x_best, so comparing windows is enough).
            stale = (new_window == best_window).flatten(1).all(dim=1)
            if not bool(stale.any()):
                break
            signs = torch.where(stale[:, None], _signs((n, c), generator, x), signs)
        x_new = x_best.clone()
        x_new.movedim(1, -1)[window] = new_window
        return x_new

    @staticmethod
    def _propose_l2(
        x: Tensor, x_best: Tensor, side: int, threat: ThreatModel, generator: torch.Generator | None
    ) -> Tensor:
        """Algorithm 3: move the mass of windows 1 and 2 into a new bump in window 1, per channel."""
        n, c = x.shape[:2]
        side = min(max(side, 3) | 1, *x.shape[-2:])  # odd and >= 3, as in the reference
        delta = x_best - x
        first, second = _windows(n, side, x, generator), _windows(n, side, x, generator)
        channels_last = delta.movedim(1, -1)
        old = channels_last[first]  # (n, s, s, c)
        union = torch.zeros_like(x[:, :1])
        union.movedim(1, -1)[first] = 1.0
        union.movedim(1, -1)[second] = 1.0
        union_norm = _norm((delta * union).flatten(2), 2)  # (n, c)
        free = (threat.eps**2 - _norm(delta.flatten(1), 1) ** 2).clamp(min=0.0)[:, None] / c
        new = _pulses(n, side, x, generator)[..., None] * _signs((n, 1, 1, c), generator, x)
        new = new + old / (_norm(old, (1, 2), keepdim=True) + 1e-12)
        scale = (free + union_norm**2).sqrt()[:, None, None, :]
        channels_last[second] = 0.0
        channels_last[first] = new / (_norm(new, (1, 2), keepdim=True) + 1e-12) * scale
        return (x + threat.eps * _l2_unit(delta)).clamp(*threat.bounds)
