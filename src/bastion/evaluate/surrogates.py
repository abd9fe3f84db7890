"""The surrogate of transfer attacks: the one the user names, or the network inside a defended model."""

from __future__ import annotations

import torch
from torch import nn

from bastion.defenses import Defended
from bastion.models import load_model

__all__ = ["surrogate_of"]


def surrogate_of(model: nn.Module, spec: str | None, device: torch.device,
                 weights: str | None = None) -> tuple[nn.Module | None, str | None]:
    """The transfer attack's surrogate and how the report names it.

    `spec` (with `weights` for a factory spec) when given, else a `Defended` model's own network.
    """
    if spec:
        return load_model(spec, weights=weights, device=str(device)).module, spec
    if isinstance(model, Defended) and (len(model.inputs) or len(model.outputs)):
        return model.model, "the undefended model"
    return None, None
