"""When a robust point stops being worth its passes: the give-up rule of `apgd-fast`.

A3 (Liu et al., CVPR 2022, arXiv:2203.08546) discards, from statistics gathered online during the
attack, the points unlikely to be broken, so that the budget goes to the others. Here the statistic
is each point's own progress between APGD's checkpoints, so the rule needs nothing but the run itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bastion.attacks.apgd import GiveUp

__all__ = ["hopeless"]


def hopeless(steps: int, slack: float, batch: int, patience: int = 2) -> GiveUp:
    """The give-up rule: a robust point leaves after `patience` slow stretches in a row.

    At checkpoint w_j, with m the point's best margin so far (< 0 while robust) and
    r = (m - m_{j-1}) / (w_j - w_{j-1}) its gain per step since the previous checkpoint, the
    stretch is slow (even `slack` times the pace fails) and the point falls short if
    m + slack * r * (steps - w_j) < 0; it leaves the run when it fell short at the `patience`
    checkpoints up to w_j. With a patience of 2, one flat stretch is not enough: APGD
    halves the step size of a point that made no progress, which often gets it moving again.
    Heuristic, not a guarantee: a point whose margin jumps after slow stretches is given up (the
    tests check that none is on the zoo's AT model).

    Args:
        steps: The run's iterations N.
        slack: Factor on the pace (larger gives up later).
        batch: Size of the attacked batch (the rows' range).
        patience: Slow stretches in a row before a point leaves (>= 1).
    """
    short_at: Tensor | None = None  # per row: the checkpoint at which it last fell short, else -1
    streak: Tensor | None = None  # per row: slow stretches in a row up to then

    def give_up(k: int, last: int, rows: Tensor, f_max: Tensor, f_prev: Tensor) -> Tensor:
        nonlocal short_at, streak
        if short_at is None or streak is None:
            short_at = torch.full((batch,), -1, dtype=torch.long, device=rows.device)
            streak = torch.zeros(batch, dtype=torch.long, device=rows.device)
        short = f_max + slack * (f_max - f_prev) / max(k - last, 1) * (steps - k) < 0
        run = torch.where(short, torch.where(short_at[rows] == last, streak[rows] + 1, 1), 0)
        short_at[rows], streak[rows] = torch.where(short, k, -1), run
        return run >= patience

    return give_up
