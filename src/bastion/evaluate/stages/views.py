"""The adaptive view of the evaluated model: what the adaptive attacks differentiate through.

BPDA through the declared non-differentiable defenses, straight-through gradients for the
non-differentiable operations found inside the model's own forward pass (rounding, `detach`,
integer casts; found by a probe pass on the first points of the data), and EOT over a random model
(Athalye, Carlini & Wagner, ICML 2018, arXiv:1802.00420, sections 4.1 and 4.2). Shared by the
stages that attack through it: escalation, curve, and attack stages told to follow the probes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bastion.attacks import Attack
from bastion.defenses import AdaptiveModel, adaptive_model
from bastion.evaluate.context import EvalContext
from bastion.evaluate.shards import counted_once

__all__ = ["PROBE_POINTS", "adaptive_view", "query_view", "view_text"]

#: Points of the data the probe pass for hidden non-differentiable operations runs on.
PROBE_POINTS = 8


def adaptive_view(ctx: EvalContext, eot_samples: int, random: bool) -> AdaptiveModel:
    """The model as the adaptive attacks see it (EOT over `eot_samples` draws when `random`)."""
    count = min(len(ctx.data), PROBE_POINTS)
    probe = ctx.data.batch(torch.arange(count), device=ctx.device, dtype=ctx.dtype)[0] if count else None
    with counted_once():  # every process probes alike
        return adaptive_model(ctx.model, eot_samples=eot_samples, random=random, probe=probe)


def view_text(adaptive: dict[str, Any]) -> str:
    """How an adaptive view differs from the model ("BPDA jpeg:identity, straight-through round, EOT x10").

    Empty when it does not differ.
    """
    bpda, eot, through = adaptive.get("bpda"), adaptive.get("eot_samples"), adaptive.get("straight_through")
    return ", ".join(filter(None, [f"BPDA {' '.join(bpda)}" if bpda else "",
                                   f"straight-through {' '.join(through)}" if through else "",
                                   f"EOT x{eot}" if eot else ""]))


def query_view(attack: Attack, view: nn.Module, model: nn.Module, random: bool) -> nn.Module:
    """What `attack` sees of an adaptive view: the model itself for a query-only attack on a model that is not random.

    BPDA and straight-through gradients keep every output bit for bit, and the straight-through
    view costs Python time on every operation; EOT averages outputs, so a random model keeps its view.
    """
    return model if attack.query_only and not random else view
