"""What minimal-norm attacks (FAB, C&W) tell for free: the robust accuracy at every radius at once."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["norm_profile"]


def norm_profile(norms: Tensor, fooled: Tensor, correct: Tensor, grid: list[float]) -> dict[str, Any]:
    """Distribution of minimal adversarial norms, and robust accuracy as a function of eps read off them.

    A point counts as robust at radius r when it is classified correctly and the attack found no
    adversarial example of norm <= r. This is an upper bound on the true robust accuracy at r (an
    attack finds *a* small perturbation, not necessarily the smallest), like every attack's number.

    Args:
        norms: (N,) norm of each point's adversarial perturbation (any value where not fooled).
        fooled: (N,) the attack found an adversarial example.
        correct: (N,) the point is classified correctly without attack.
        grid: Radii at which to read the accuracy.
    """
    n = len(correct)
    found = norms[fooled & correct].float()
    quantiles = {}
    if found.numel():
        for q in (0.1, 0.25, 0.5, 0.75, 0.9):
            quantiles[f"q{int(q * 100)}"] = float(torch.quantile(found, q))
    curve = []
    for radius in grid:
        robust = correct & ~(fooled & (norms <= radius + 1e-6))
        curve.append({"eps": float(radius), "accuracy": float(robust.float().mean()) if n else 0.0})
    return {
        "attacked": int(correct.sum()),
        "found": int(found.numel()),
        "median": quantiles.get("q50"),
        "mean": float(found.mean()) if found.numel() else None,
        "quantiles": quantiles,
        "curve": curve,
    }
