"""Optional per-request probes that cost extra passes: input-gradient norm and distance to the boundary.

Each takes a batch (B, C, H, W) in [0, 1] on the model's device and returns (B,) values on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from bastion.passes import attack_mode

__all__ = ["boundary_distance", "gradient_norm"]

_TINY = 1e-12


def gradient_norm(model: nn.Module, x: Tensor) -> Tensor:
    """L2 norm of the input gradient of the cross-entropy at the predicted label (one backward pass).

    Large input gradients mark inputs where a small change moves the loss a lot, a cheap signal
    used by gradient-based detectors (Ross & Doshi-Velez, AAAI 2018, arXiv:1711.09404).
    """
    with attack_mode(model), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        logits = model(x)
        loss = F.cross_entropy(logits, logits.argmax(dim=1), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    norms: Tensor = grad.flatten(1).norm(dim=1).detach().cpu()
    return norms


def boundary_distance(model: nn.Module, x: Tensor, steps: int = 3, overshoot: float = 0.02) -> Tensor:
    """Estimated L2 distance to the nearest decision boundary: a few DeepFool steps.

    DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016, arXiv:1511.04599) linearizes the
    margin between the predicted class and the runner-up and steps onto its zero level set; after
    `steps` steps (one backward pass each) the accumulated step length bounds the minimal
    perturbation from above for points that crossed, and estimates it for the others. Adversarial
    examples made by PGD sit close to a boundary, so a small distance is suspicious.

    Args:
        model: The classifier.
        x: (B, C, H, W) inputs in [0, 1].
        steps: DeepFool iterations, >= 1.
        overshoot: Relative overshoot past the linearized boundary.
    """
    with attack_mode(model), torch.enable_grad():
        x0 = x.detach()
        with torch.no_grad():
            label = model(x0).argmax(dim=1)
        x_cur = x0.clone()
        done = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
        for _ in range(max(1, steps)):
            x_cur = x_cur.detach().requires_grad_(True)
            logits = model(x_cur)
            own = logits.gather(1, label[:, None]).squeeze(1)
            others = logits.scatter(1, label[:, None], -torch.inf)
            margin = own - others.max(dim=1).values
            (grad,) = torch.autograd.grad(margin.sum(), x_cur)
            done |= margin.detach() <= 0
            norm_sq = grad.flatten(1).pow(2).sum(dim=1).clamp_min(_TINY)
            step = (margin.detach().clamp_min(0) / norm_sq * (1 + overshoot)).view(-1, *[1] * (x0.dim() - 1))
            moving = (~done).view(-1, *[1] * (x0.dim() - 1))
            x_cur = torch.where(moving, (x_cur - step * grad).clamp(0, 1), x_cur).detach()
    distance: Tensor = (x_cur - x0).flatten(1).norm(dim=1).cpu()
    return distance
