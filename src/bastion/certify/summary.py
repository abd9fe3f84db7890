"""Certified accuracy at a grid of radii, and the summary of a certification run (shared by CLI and stage)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bastion.certify.smoothing import Smooth, max_certifiable_radius
from bastion.errors import InputError

__all__ = ["DEFAULT_RADII", "certified_accuracy", "parse_radii", "summarize"]

DEFAULT_RADII = (0.0, 0.5, 1.0, 1.5, 2.0)


def parse_radii(text: str | Sequence[float] | None) -> list[float]:
    """A grid of radii from "0,0.5,1" (or a sequence), sorted; None gives `DEFAULT_RADII`."""
    if text is None:
        return list(DEFAULT_RADII)
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    except ValueError:
        raise InputError(f"radii must be comma-separated numbers such as 0,0.5,1, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise InputError(f"radii must be finite numbers >= 0, got {text!r}")
    return sorted(set(values))


def certified_accuracy(
    predictions: Sequence[int], radii: Sequence[float], labels: Sequence[int], grid: Sequence[float]
) -> list[dict[str, float]]:
    """Share of points whose smoothed prediction is correct and certified at radius >= r, for each r of `grid`.

    Cohen et al. (ICML 2019, arXiv:1902.02918), section 4: abstentions count as errors.
    """
    n = len(labels)
    correct = [p == y and p != Smooth.ABSTAIN for p, y in zip(predictions, labels, strict=True)]
    return [{"radius": float(r), "accuracy": sum(c and rad >= r for c, rad in zip(correct, radii, strict=True)) / n
             if n else 0.0} for r in grid]


def summarize(rows: Sequence[dict[str, Any]], grid: Sequence[float], *, sigma: float, n: int,
              alpha: float, fixed_samples: int | None = None) -> dict[str, Any]:
    """The headline numbers of per-image rows (keys label, prediction, radius, seconds).

    Returns:
        `certified_accuracy` (list of {radius, accuracy}), `abstain_rate`, `accuracy` (the smoothed
        classifier's, = certified accuracy at radius 0), `median_radius_correct` (over the correctly
        predicted points),
        `max_certifiable_radius` (sigma * Phi^-1(alpha^(1/n)): no radius can exceed it with n
        samples), `seconds_per_image`, `n_points`, `mean_radius` (abstentions count 0), and the
        cost: `samples` (base-model forward samples in all, selection included, from the rows'
        `samples`), `samples_per_point` and, given `fixed_samples` (what fixed-n CERTIFY spends
        per point), `fixed_samples` (in all) and `saved` (their ratio).
    """
    predictions = [int(r["prediction"]) for r in rows]
    radii = [float(r["radius"]) for r in rows]
    labels = [int(r["label"]) for r in rows]
    count = len(rows)
    correct_radii = sorted(r for p, y, r in zip(predictions, labels, radii, strict=True) if p == y)
    return {
        "n_points": count,
        "certified_accuracy": certified_accuracy(predictions, radii, labels, grid),
        "accuracy": sum(p == y for p, y in zip(predictions, labels, strict=True)) / count if count else 0.0,
        "abstain_rate": sum(p == Smooth.ABSTAIN for p in predictions) / count if count else 0.0,
        "median_radius_correct": correct_radii[len(correct_radii) // 2] if correct_radii else 0.0,
        "max_certifiable_radius": max_certifiable_radius(sigma, n, alpha),
        "seconds_per_image": sum(float(r.get("seconds", 0.0)) for r in rows) / count if count else 0.0,
        "mean_radius": sum(r for p, r in zip(predictions, radii, strict=True) if p != Smooth.ABSTAIN) / count
        if count else 0.0,
        **_cost(rows, fixed_samples),
    }


def _cost(rows: Sequence[dict[str, Any]], fixed_samples: int | None) -> dict[str, Any]:
    """Samples spent, and the ratio to what fixed-n CERTIFY would have spent on the same points."""
    spent = sum(int(r.get("samples", 0)) for r in rows)
    out: dict[str, Any] = {"samples": spent, "samples_per_point": spent / len(rows) if rows else 0.0}
    if fixed_samples is not None:
        out["fixed_samples"] = fixed_samples * len(rows)
        out["saved"] = out["fixed_samples"] / spent if spent else 0.0
    return out
