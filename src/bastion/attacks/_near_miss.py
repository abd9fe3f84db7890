"""Which robust points a run nearly broke: where `apgd-fast` spends the passes its give-up rule saved.

A3 (Liu et al., CVPR 2022, arXiv:2203.08546) moves budget from hopeless points to the promising
ones. Here the promising ones are measured after the run: a point still robust whose best margin
max_{j != y} z_j - z_y closed all but a share `near` of its clean margin sits next to the decision
boundary, where one more run from another start often crosses it (on zoo:mnist-cnn at Linf 0.1, the
points AutoAttack broke and one `apgd-fast` run missed were, but one, among the 16 of 511 robust
points nearest by this ratio).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.losses import cw_margin

__all__ = ["near_misses"]


def near_misses(model: nn.Module, x_best: Tensor, y: Tensor, fooled: Tensor, clean_margin: Tensor,
                near: float) -> Tensor:
    """(B,) bool: robust points whose best margin is above `near` times their clean margin (both < 0).

    One forward pass on the robust points. `clean_margin` is max_{j != y} z_j - z_y at the clean
    points; a correctly classified point has it below 0, and a misclassified one is never near.
    """
    out = torch.zeros_like(fooled)
    rows = (~fooled & (clean_margin < 0)).nonzero().squeeze(1)
    if rows.numel() == 0:
        return out
    with torch.no_grad():
        margin = cw_margin(model(x_best[rows]).float(), y[rows])
    out[rows] = margin > near * clean_margin[rows]
    return out
