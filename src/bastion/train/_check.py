"""Held-out clean and PGD accuracy: the per-epoch guard and the model card's numbers."""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks.pgd import PGD
from bastion.data import ImageSet
from bastion.passes import attack_mode, model_device_dtype
from bastion.threat import ThreatModel

__all__ = ["heldout_accuracy"]


def heldout_accuracy(
    model: nn.Module,
    data: ImageSet,
    threat: ThreatModel | None,
    *,
    steps: int = 10,
    restarts: int = 1,
    batch_size: int = 500,
    seed: int = 0,
) -> tuple[float, float | None]:
    """Clean accuracy and PGD robust accuracy (None without a threat model) of `model` on `data`.

    PGD (Madry et al. 2018) attacks only the correctly classified points; a fixed seed makes the
    check of one epoch comparable with the next. The model's train/eval mode is restored.
    """
    device, dtype = model_device_dtype(model)
    generator = torch.Generator().manual_seed(seed)
    attack = PGD(steps=steps, n_restarts=restarts) if threat is not None and threat.eps > 0 else None
    clean = robust = 0
    for _, x, y in data.batches(batch_size, device=device, dtype=dtype):
        with attack_mode(model), torch.no_grad():
            correct = model(x).argmax(1) == y
        clean += int(correct.sum())
        if attack is not None and threat is not None and bool(correct.any()):
            result = attack(model, x[correct], y[correct], threat, generator=generator)
            robust += int((~result.success).sum())
    n = max(1, len(data))
    if threat is None:
        return clean / n, None
    return clean / n, (robust if attack is not None else clean) / n
