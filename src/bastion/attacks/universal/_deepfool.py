"""DeepFool's minimal step (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016, arXiv:1511.04599), batched.

The inner step of the universal perturbation algorithm: the smallest L2 or Linf change that moves a
point across the nearest linearized decision boundary, iterated until the label changes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["deepfool_step", "class_gradients"]


def class_gradients(model: nn.Module, x: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Logits (B, K) and the gradient of every logit (B, K, ...) in one forward and one backward pass.

    Each point is repeated K times and the k-th copy's k-th logit is differentiated, so one batched
    pass gives the whole Jacobian.
    """
    k = num_classes
    copies = x.repeat_interleave(k, dim=0).requires_grad_(True)
    logits = model(copies).reshape(len(x), k, k)
    picked = logits.diagonal(dim1=1, dim2=2)
    (grads,) = torch.autograd.grad(picked.sum(), copies)
    return picked.detach(), grads.reshape(len(x), k, *x.shape[1:])


def deepfool_step(
    model: nn.Module, x: Tensor, labels: Tensor, norm: str, num_classes: int, *, steps: int = 10,
    overshoot: float = 0.02, bounds: tuple[float, float] = (0.0, 1.0),
) -> tuple[Tensor, Tensor]:
    """DeepFool's multi-class iteration from `x` (the paper's L2 version, and its l_p version with p = inf).

    Args:
        model: Maps (B, ...) inputs to logits (B, K).
        x: (B, ...) starting points in `bounds`.
        labels: (B,) the labels to move away from.
        norm: "l2" or "linf".
        num_classes: K, the model's number of outputs.
        steps: Most linearization steps.
        overshoot: The final step is (1 + overshoot) times the accumulated one, to land past the boundary.
        bounds: The input box; points are clipped into it before each query.

    Returns:
        (B, ...) the step r (zero where the label already differs at `x`) and (B,) whether the label
        changed within `steps`.
    """
    total = torch.zeros_like(x)
    crossed = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for i in range(steps + 1):  # the last round only checks the last step
        active = (~crossed).nonzero().squeeze(1)
        if not len(active):
            break
        point = (x[active] + (1 + overshoot) * total[active]).clamp(*bounds)
        logits, grads = class_gradients(model, point, num_classes)
        label = labels[active]
        done = logits.argmax(1) != label
        crossed[active[done]] = True
        keep = ~done
        if not keep.any() or i == steps:
            break
        active, logits, grads, label = active[keep], logits[keep], grads[keep], label[keep]
        rows = torch.arange(len(active), device=x.device)
        w = grads - grads[rows, label].unsqueeze(1)
        f = logits - logits[rows, label].unsqueeze(1)
        w_norm = w.flatten(2).norm(p=2 if norm == "l2" else 1, dim=2)
        ratio = f.abs() / (w_norm + 1e-12)
        ratio[rows, label] = float("inf")
        nearest = ratio.argmin(1)
        w_l, f_l, n_l = w[rows, nearest], f[rows, nearest].abs() + 1e-4, w_norm[rows, nearest] + 1e-12
        shape = (-1, *[1] * (x.dim() - 1))
        step = (f_l / n_l**2).reshape(shape) * w_l if norm == "l2" else (f_l / n_l).reshape(shape) * w_l.sign()
        total[active] = total[active] + step
    return (1 + overshoot) * total, crossed
