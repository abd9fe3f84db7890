"""Every signal the guard computes as a suspicion score (higher = more suspicious), ready for a conformal p-value.

Detector scores come from `bastion.detect`'s own detectors, run on `SharedForward`: one forward
pass per batch gives the logits to all of them. Feature squeezing runs the batch and its squeezed
copies in one pass, whose leading rows are the batch's logits; `margin`, `entropy` and `confidence`
read only the logits, so they cost no pass of their own. Probes, when enabled: the input-gradient
norm (large is suspicious) and the DeepFool distance to the boundary (small is suspicious: its score
is minus the distance). Each becomes a conformal p-value against the same clean calibration images,
and the guard flags on one combined p-value over all of them (`bastion.serve.combined`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bastion.detect import Detector
from bastion.serve.config import GuardSettings
from bastion.serve.probes import boundary_distance, gradient_norm

__all__ = ["SharedForward", "detector_scores", "probe_batches", "probe_scores"]


class SharedForward(nn.Module):
    """`model` for one batch `x`, run at most once on `x`'s rows.

    The first pass whose leading rows are `x` (`x` itself, or `x` followed by other inputs, as feature
    squeezing sends it) keeps those rows' logits, and a later call on `x` answers them without a pass.

    Args:
        model: The classifier.
        x: The batch (B, C, H, W).
    """

    def __init__(self, model: nn.Module, x: Tensor) -> None:
        super().__init__()
        self.model, self.x = model, x
        self.logits: Tensor | None = None

    def forward(self, inputs: Tensor) -> Tensor:
        """The model's logits of `inputs`, reusing those of `x` when `inputs` is `x`."""
        if self.logits is not None and inputs is self.x:
            return self.logits
        out: Tensor = self.model(inputs)
        b = len(self.x)
        if self.logits is None and (inputs is self.x or (len(inputs) >= b and torch.equal(inputs[:b], self.x))):
            self.logits = out[:b]
        return out

    def batch_logits(self) -> Tensor:
        """The logits of `x` (one pass if no detector has run it yet)."""
        return self.logits if self.logits is not None else self(self.x)


def detector_scores(model: nn.Module, x: Tensor, detectors: Sequence[Detector]) -> tuple[Tensor, dict[str, Tensor]]:
    """The logits of `x` and each detector's scores (B,) on the CPU, from one forward pass where they allow.

    Detectors that run their own pass (feature squeezing) go first, so that theirs gives the logits.
    """
    shared = SharedForward(model, x)
    order = sorted(detectors, key=lambda d: d.name in ("margin", "entropy", "confidence"))
    scores = {d.name: d.score(shared, x).detach().cpu() for d in order}
    return shared.batch_logits(), {d.name: scores[d.name] for d in detectors}


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
