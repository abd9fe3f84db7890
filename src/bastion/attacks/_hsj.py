"""HopSkipJump's building blocks (Chen, Jordan & Wainwright, 2020), batched over images.

Every function queries the model only through a `DecisionOracle` (its top-1 label) and never
spends past an image's budget: where the budget runs out, a search stops at its last adversarial point.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bastion.attacks._decision import DecisionOracle

__all__ = ["binary_search", "estimate_gradient", "geometric_step", "initialize"]

_INIT_BLEND_THRESHOLD = 1e-3  # the reference implementation's blend search to the first start
_MAX_HALVINGS = 60


def _col(values: Tensor, like: Tensor) -> Tensor:
    return values.reshape(-1, *[1] * (like.dim() - 1))


def _per_probe(values: Tensor, probes: Tensor) -> Tensor:
    """Reshape (R, n) values to broadcast against (R, n, ...) probes."""
    return values.reshape(*values.shape, *[1] * (probes.dim() - 2))


def _draw(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None, normal: bool) -> Tensor:
    device = generator.device if generator is not None else like.device
    sample = torch.randn if normal else torch.rand
    return sample(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def initialize(
    oracle: DecisionOracle, x: Tensor, tries: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Uniform noise in the box until it is adversarial, then blended towards x (the reference code).

    Images that noise never fools borrow the nearest adversarial image of the batch instead.

    Returns:
        (B, ...) adversarial starts (x where none was found) and the (B,) mask of images that have one.
    """
    low, high = oracle.bounds
    start, found = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    everyone = torch.arange(len(x), device=x.device)
    for _ in range(tries):
        rows = everyone[~found & (oracle.left(everyone) >= 1)]
        if not len(rows):
            break
        noise = low + (high - low) * _draw((len(rows), *x.shape[1:]), x, generator, normal=False)
        hit = oracle.ask(noise, rows)
        start[rows[hit]], found[rows[hit]] = noise[hit], True
    _borrow_starts(oracle, x, start, found)
    rows = everyone[found]
    start[rows] = binary_search(oracle, x[rows], start[rows], rows, _INIT_BLEND_THRESHOLD, "l2")
    return start, found


def _borrow_starts(oracle: DecisionOracle, x: Tensor, start: Tensor, found: Tensor) -> None:
    """Start images that noise never fooled from the nearest adversarial image of the batch.

    Noise can look like one class to a model, so it never fools the images of that class; the other
    images of the batch are natural starting points (one label query per image).
    """
    everyone = torch.arange(len(x), device=x.device)
    if bool(found.all()) or len(x) < 2 or bool((oracle.left(everyone) < 1).any()):
        return
    labels = oracle.labels(x, everyone)
    for i in everyone[~found].tolist():
        usable = oracle.adversarial(labels, torch.full_like(everyone, i))
        if usable.any():
            distance = (x[usable] - x[i]).flatten(1).norm(dim=1)
            start[i], found[i] = x[usable][distance.argmin()], True


def _project(x: Tensor, adv: Tensor, alpha: Tensor, norm: str) -> Tensor:
    """Alg. 1's projection: the blend (1 - alpha) x + alpha adv in L2; adv clipped to x +- alpha in Linf."""
    a = _col(alpha, x)
    return (1 - a) * x + a * adv if norm == "l2" else torch.minimum(torch.maximum(adv, x - a), x + a)


def binary_search(oracle: DecisionOracle, x: Tensor, adv: Tensor, rows: Tensor, theta: float, norm: str) -> Tensor:
    """The boundary point between x and the adversarial `adv`, to within theta (Alg. 1; adversarial side)."""
    if norm == "l2":
        high = torch.ones(len(x), dtype=x.dtype, device=x.device)
        threshold = torch.full_like(high, theta)
    else:
        high = (adv - x).flatten(1).abs().amax(dim=1)
        threshold = torch.clamp(high * theta, max=theta)
    low = torch.zeros_like(high)
    while True:
        searching = ((high - low) > threshold) & (oracle.left(rows) >= 1)
        index = searching.nonzero().squeeze(1)
        if not len(index):
            return _project(x, adv, high, norm)
        mid = (high[index] + low[index]) / 2
        hit = oracle.ask(_project(x[index], adv[index], mid, norm), rows[index])
        high[index] = torch.where(hit, mid, high[index])
        low[index] = torch.where(hit, low[index], mid)


def estimate_gradient(
    oracle: DecisionOracle, adv: Tensor, rows: Tensor, evals: Tensor, delta: Tensor, norm: str, batch_size: int,
    generator: torch.Generator | None,
) -> Tensor:
    """Unit-L2 Monte-Carlo estimate of the boundary's normal at each `adv`, baseline-subtracted.

    Args:
        oracle: The label-only model.
        adv: (R, ...) boundary points.
        rows: (R,) their images' indices in the oracle's batch.
        evals: (R,) sign queries per image (Gaussian directions in L2, uniform in Linf, on the unit sphere).
        delta: (R,) probing radius.
        norm: "l2" or "linf".
        batch_size: Most probes per forward pass.
        generator: Source of the random directions.
    """
    out = torch.zeros_like(adv)
    per_pass = max(batch_size // max(int(evals.max()), 1), 1)
    for start in range(0, len(adv), per_pass):
        part = slice(start, start + per_pass)
        n_i, a = evals[part], adv[part]
        n = int(n_i.max())
        if n < 1:
            continue
        shape = (len(a), n, *adv.shape[1:])
        rv = _draw(shape, a, generator, normal=norm == "l2")
        rv = rv if norm == "l2" else 2 * rv - 1
        rv = rv / _per_probe(rv.flatten(2).norm(dim=2), rv)
        step = _col(delta[part], a).unsqueeze(1)
        probes = (a.unsqueeze(1) + step * rv).clamp(*oracle.bounds)
        rv = (probes - a.unsqueeze(1)) / step
        valid = torch.arange(n, device=a.device) < n_i.unsqueeze(1)
        fval = torch.zeros(len(a), n, dtype=a.dtype, device=a.device)
        hit = oracle.ask(probes[valid], rows[part].repeat_interleave(n_i.clamp(min=0)))
        fval[valid] = 2 * hit.to(a.dtype) - 1
        mean = fval.sum(dim=1) / n_i.clamp(min=1)
        same = (mean.abs() == 1).unsqueeze(1)  # all one sign: no baseline, the mean direction (or its opposite)
        weights = torch.where(same, fval, fval - mean.unsqueeze(1)) * valid
        grad = (_per_probe(weights, rv) * rv).sum(dim=1)
        out[part] = grad / _col(grad.flatten(1).norm(dim=1).clamp(min=1e-12), grad)
    return out


def geometric_step(
    oracle: DecisionOracle, adv: Tensor, update: Tensor, size: Tensor, rows: Tensor, keep: int
) -> Tensor:
    """Geometric step-size search: start at `size` (dist / sqrt(t)), halve until adv + size * update is adversarial.

    Leaves `keep` queries per image for the binary search after it; an image that runs out (or never
    finds an adversarial step) gets size 0, i.e. stays where it is.
    """
    size, pending = size.clone(), torch.ones(len(adv), dtype=torch.bool, device=adv.device)
    for _ in range(_MAX_HALVINGS):
        index = (pending & (oracle.left(rows) > keep)).nonzero().squeeze(1)
        if not len(index):
            break
        hit = oracle.ask(adv[index] + _col(size[index], adv) * update[index], rows[index])
        pending[index[hit]] = False
        size[index[~hit]] = size[index[~hit]] / 2
    return torch.where(pending, torch.zeros_like(size), size)
