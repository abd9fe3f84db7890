"""Restarts on the points not yet fooled, keeping each point's best candidate: one copy of the mechanism.

Madry et al. (ICLR 2018, arXiv:1706.06083) report PGD's robust accuracy as the worst case over random
restarts; AutoAttack (Croce & Hein, ICML 2020) restarts only the points no earlier run fooled, which
costs nothing on the points already broken. Each run sees only the survivors; a point's candidate is
replaced when the new run fools it, or scores better than every earlier run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["Run", "restart_survivors"]

#: One run on the rows given: (candidates, scores, fooled), each indexed like the rows.
Run = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def restart_survivors(x: Tensor, runs: int, run: Run, *, score: Tensor, fooled: Tensor,
                      higher_is_better: bool = True, best: Tensor | None = None) -> Tensor:
    """Run `run` up to `runs` times, each on the rows not yet fooled; return each row's best candidate.

    Args:
        x: (B, ...) the starting points, each row's candidate until a run improves it.
        runs: Most runs; fewer when every row is fooled earlier.
        run: Takes the (R,) row indices still to attack; returns candidates (R, ...), scores (R,) and
            whether each fooled the model (R,).
        score: (B,) each row's best score so far (updated in place).
        fooled: (B,) bool, rows already fooled, which no run attacks (updated in place).
        higher_is_better: Whether a larger score is a better candidate (a loss to maximize).
        best: (B, ...) candidates of earlier runs (another target's, say) to improve on; None starts at `x`.
    """
    best = x.clone() if best is None else best.clone()
    for _ in range(runs):
        rows = (~fooled).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        candidates, scores, fooled_run = run(rows)
        improves = scores > score[rows] if higher_is_better else scores < score[rows]
        better = fooled_run | improves
        best[rows] = torch.where(better.view(-1, *[1] * (x.dim() - 1)), candidates, best[rows])
        score[rows] = torch.where(better, scores, score[rows])
        fooled[rows] = fooled_run
    return best
