"""The smallest radius at which a found adversarial example still fools the model, by bisection toward the clean point.

An attack at eps returns a point x + delta, usually on the ball's surface. Bisecting t in [0, 1]
along the segment x + t delta finds the smallest t whose point is still misclassified: the point
is then known broken at every radius >= ||t delta||, an upper bound on its minimal adversarial norm
at the price of a few forward passes (the per-point information the accuracy-vs-eps curve reads
below the threat model's eps instead of attacking again; cf. the minimal-norm profile of FAB,
Croce & Hein, ICML 2020, arXiv:1907.02044, which gives the same bound by an attack of its own).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.passes import attack_mode
from bastion.threat import Norm

__all__ = ["shrunk_radius"]


def shrunk_radius(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, norm: Norm, steps: int = 6) -> Tensor:
    """Per point, ||t delta|| for the smallest t (to 2^-steps) at which x + t delta is still misclassified.

    `x_adv` must fool `model` (t = 1 is adversarial); returns a CPU float tensor of radii.
    """
    delta = x_adv - x
    low = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    high = torch.ones(len(x), device=x.device, dtype=x.dtype)
    shape = (-1,) + (1,) * (x.dim() - 1)
    with attack_mode(model), torch.no_grad():
        for _ in range(steps):
            middle = (low + high) / 2
            fooled = model(x + middle.view(shape) * delta).argmax(1) != y
            high, low = torch.where(fooled, middle, high), torch.where(fooled, low, middle)
    return norm.measure(high.view(shape) * delta).float().cpu()
