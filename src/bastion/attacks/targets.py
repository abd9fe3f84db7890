"""Target labels of a targeted attack, chosen per point: random, least-likely, or one class for every point."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.errors import InputError

__all__ = ["TARGET_CHOICES", "select_targets"]

#: The target specs besides a class index.
TARGET_CHOICES = ("random", "least-likely")


def select_targets(spec: str | None, model: nn.Module, x: Tensor, y: Tensor,
                   generator: torch.Generator | None = None) -> Tensor | None:
    """The target label of each point for `spec`, or None for an untargeted attack (`spec` None).

    "random" draws a class other than the true one uniformly (Carlini & Wagner 2017,
    arXiv:1608.04644, section 5: the average case); "least-likely" takes the class the model scores
    lowest on the clean point (Kurakin et al. 2017, arXiv:1607.02533: the hardest case); a class
    index targets that class at every point.

    Args:
        spec: "random", "least-likely", a class index as text, or None.
        model: The classifier (its logits on `x` choose least-likely targets and bound the class index).
        x: (N, C, H, W) clean images.
        y: (N,) true labels.
        generator: Source of the random targets (a CPU generator).

    Raises:
        InputError: If `spec` is none of these, or the class index is not one of the model's classes.
    """
    if spec is None:
        return None
    with torch.no_grad():
        logits: Tensor = model(x)
    classes = logits.shape[1]
    if spec == "least-likely":
        return logits.argmin(1)
    if spec == "random":
        offset = torch.randint(1, classes, y.shape, generator=generator).to(y.device)
        targets: Tensor = (y + offset) % classes
        return targets
    try:
        label = int(spec)
    except ValueError:
        raise InputError(f"--target must be {', '.join(TARGET_CHOICES)} or a class index, got {spec!r}") from None
    if not 0 <= label < classes:
        raise InputError(f"--target {label} is not a class of this model (0..{classes - 1})")
    return torch.full_like(y, label)
