"""Output-diversified initialization (ODI; Tashiro, Sugiyama & Tashiro, NeurIPS 2020, arXiv:2003.06878).

A random start spreads points in input space, but their outputs barely move, so restarts of a
gradient attack tend to climb the same slope. ODI instead takes a few steps from the random start
that maximize w^T f(x) for a random direction w ~ U(-1, 1)^K in logit space, so each restart begins
where the model's output differs, and the attack that follows explores more of the landscape.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.attacks.base import is_success
from bastion.threat import ThreatModel

__all__ = ["odi_start"]


def odi_start(
    model: nn.Module,
    x: Tensor,
    start: Tensor,
    y: Tensor,
    threat: ThreatModel,
    steps: int,
    generator: torch.Generator | None,
    target: Tensor | None = None,
) -> Tensor:
    """`steps` ODI steps of size eps from `start`; a point stops where a step's logits show it fooled.

    One forward and one backward pass per step: the logits the gradient comes from also say whether
    that iterate already fools the model; a fooled point stays there and leaves the loop (the attack
    that follows starts from it and finds it fooled on its first evaluation).

    Args:
        model: Maps inputs to logits (B, K).
        x: (B, ...) clean inputs, the centre of the threat model's ball.
        start: (B, ...) random starting points inside the threat model.
        y: (B,) true labels.
        threat: The perturbation set; the step is eps along the norm's steepest ascent.
        steps: ODI steps (2 in the paper for Linf; 0 returns `start`).
        generator: Draws the direction w, one per point.
        target: (B,) target labels of a targeted attack (a point stops once it reaches its target), or None.
    """
    x_odi, frozen = start.detach().clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    device = generator.device if generator is not None else x.device
    w: Tensor | None = None
    for _ in range(steps):
        rows = (~frozen).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        x_rows = x_odi[rows].requires_grad_(True)
        logits: Tensor = model(x_rows)
        if w is None:  # one direction per point, drawn once
            w = 2 * torch.rand((len(x), logits.shape[1]), generator=generator, device=device,
                               dtype=logits.dtype).to(x.device) - 1
        (grad,) = torch.autograd.grad((w[rows] * logits).sum(), x_rows)
        with torch.no_grad():
            fooled = is_success(logits, y[rows], None if target is None else target[rows])
            step = threat.clip(x[rows], x_rows + threat.eps * threat.norm.ascent(grad))
            x_odi[rows] = torch.where(fooled.view(-1, *[1] * (x.dim() - 1)), x_rows, step)
            frozen[rows] = fooled
    return x_odi
