"""The radii of the accuracy-vs-eps curve, from the run's options (shared by the curve and the minimal-norm stage)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["curve_grid"]


def curve_grid(options: Mapping[str, Any]) -> list[float]:
    """`curve_points` radii from 0 to `curve_max` (None: twice `eps`), with the threat model's `eps` among them."""
    points, eps = int(options["curve_points"]), float(options["eps"])
    if points == 0:
        return []
    top = options["curve_max"] if options["curve_max"] is not None else 2 * eps
    if points == 1:
        return [eps]
    grid = [float(v) for v in np.linspace(0.0, top, points)]
    if all(abs(v - eps) > 1e-9 for v in grid) and eps <= top:
        grid = sorted([*grid, eps])
    return grid
