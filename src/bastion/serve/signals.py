"""Every signal the guard computes as a suspicion score (higher = more suspicious), ready for a conformal p-value.

Output signals: the `margin`, `entropy` and `confidence` detectors of `bastion.detect` read only the
logits, so the guard computes them from the logits it already has (no extra forward pass; same
formulas, checked by the tests). Probes, when enabled: the input-gradient norm (large is
suspicious) and the DeepFool distance to the boundary (small is suspicious: its score is minus the
distance). Each becomes a conformal p-value against the same clean calibration images, and the
guard flags on one combined p-value over all of them (`bastion.serve.combined`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bastion.serve.config import GuardSettings
from bastion.serve.probes import boundary_distance, gradient_norm

__all__ = ["LOGIT_SCORES", "probe_batches", "probe_scores"]


def _margin(logits: Tensor) -> Tensor:
    top2 = logits.topk(2, dim=1).values
    return top2[:, 1] - top2[:, 0]


def _entropy(logits: Tensor) -> Tensor:
    log_p = logits.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def _confidence(logits: Tensor) -> Tensor:
    return 1.0 - logits.softmax(dim=1).amax(dim=1)


#: Detector name -> its score computed from logits (B, K) already at hand.
LOGIT_SCORES: dict[str, Callable[[Tensor], Tensor]] = {"margin": _margin, "entropy": _entropy,
                                                       "confidence": _confidence}


def probe_scores(model: nn.Module, x: Tensor, settings: GuardSettings,
                 seconds: dict[str, float] | None = None) -> dict[str, Tensor]:
    """The enabled probes' suspicion scores (B,) on the CPU: "gradient-norm" and "boundary-distance" (minus it)."""
    out: dict[str, Tensor] = {}
    if settings.gradient_norm:
        start = time.perf_counter()
        out["gradient-norm"] = gradient_norm(model, x).double()
        if seconds is not None:
            seconds["gradient"] = time.perf_counter() - start
    if settings.boundary_steps > 0:
        start = time.perf_counter()
        out["boundary-distance"] = -boundary_distance(model, x, settings.boundary_steps).double()
        if seconds is not None:
            seconds["boundary"] = time.perf_counter() - start
    return out


def probe_batches(model: nn.Module, x: Tensor, settings: GuardSettings, batch_size: int) -> dict[str, Tensor]:
    """`probe_scores` over a large set (N, C, H, W), in chunks of `batch_size`."""
    chunks = [probe_scores(model, chunk, settings) for chunk in torch.split(x, batch_size)]
    return {name: torch.cat([c[name] for c in chunks]) for name in (chunks[0] if chunks else {})}
