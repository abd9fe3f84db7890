"""MALT's target ranking (Melamed et al., NeurIPS 2024, arXiv:2407.02240): the nearest boundaries first.

A targeted attack tries only a few classes, so which ones matters. AutoAttack's APGD-T takes the
classes with the highest logits; MALT (Mesoscopic Almost Linearity Targeting) ranks each class t by
the distance to its decision boundary under a linear model of the logits at x,
|z_y - z_t| / ||grad_x (z_y - z_t)||_*, with ||.||_* the dual of the threat model's norm (L1 for
Linf, L2 for L2). A class with a high logit but a steep, far boundary then ranks below one with a
lower logit that a small step reaches. On a linear model the score is the exact distance to that
class's boundary (the input box aside).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.threat import Norm

__all__ = ["dual_norm", "malt_scores", "malt_targets"]


def dual_norm(norm: Norm, grad: Tensor) -> Tensor:
    """(B,) dual norm of a (B, ...) gradient: <g, a(g)> for the norm's unit steepest-ascent direction a.

    Holds for any norm whose `ascent` has unit norm: sign(g) gives ||g||_1, g / ||g||_2 gives ||g||_2.
    """
    return (grad * norm.ascent(grad)).flatten(1).sum(dim=1)


def malt_scores(model: nn.Module, x: Tensor, y: Tensor, norm: Norm) -> Tensor:
    """(B, K) linearized distance from x to the boundary between y and each class (inf for y itself).

    One forward pass and one backward pass through it per class t, for the whole batch at once.
    """
    x = x.detach().requires_grad_(True)
    logits: Tensor = model(x)
    k = logits.shape[1]
    scores = torch.full((len(x), k), torch.inf, device=x.device, dtype=logits.dtype)
    true = torch.nn.functional.one_hot(y, k).to(logits.dtype)
    for t in range(k):
        rows = y != t
        if not bool(rows.any()):
            continue
        seed = true - torch.nn.functional.one_hot(torch.full_like(y, t), k).to(logits.dtype)
        (grad,) = torch.autograd.grad(logits, x, grad_outputs=seed, retain_graph=t < k - 1)
        gap = (logits.detach() * seed).sum(dim=1).abs()  # |z_y - z_t|
        scores[rows, t] = (gap / (dual_norm(norm, grad) + 1e-12))[rows]
    return scores


def malt_targets(model: nn.Module, x: Tensor, y: Tensor, norm: Norm, n_targets: int) -> Tensor:
    """(B, n) the `n_targets` classes nearest by `malt_scores`, nearest first (n clipped to K - 1)."""
    scores = malt_scores(model, x, y, norm)
    return scores.topk(min(n_targets, scores.shape[1] - 1), dim=1, largest=False).indices
