"""The inner maximization of adversarial training: PGD on any objective, returning the last iterate."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from bastion.distributed import unwrap
from bastion.passes import attack_mode
from bastion.threat import ThreatModel

__all__ = ["perturb"]


def perturb(
    model: nn.Module,
    x: Tensor,
    objective: Callable[[Tensor], Tensor],
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float,
    start: str = "uniform",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Maximize `objective(model(x_adv))` over the threat model by projected steepest ascent.

    Unlike the evaluation attack `bastion.attacks.PGD`, which keeps the first iterate that fools
    the model, training needs the final iterate of its own objective (cross-entropy for Madry et
    al., the KL term for TRADES), as the papers' reference code does. The model is in eval mode
    with frozen parameters meanwhile (`attack_mode`) and comes back in its previous mode.

    Args:
        model: The model being trained; a `DistributedDataParallel` wrapper is unwrapped, so that
            the attack's backward passes never arm its gradient all-reduce (MART #125, pytorch #22436).
        x: (B, C, H, W) clean inputs within the threat model's bounds.
        objective: Maps logits (B, K) to per-sample losses (B,) to maximize.
        threat: The perturbation set.
        steps: Gradient steps; 0 returns the (clipped) starting point.
        step_size: Absolute step size in the norm.
        start: "uniform" in the eps-ball (Madry et al.), "normal" 0.001 * N(0, I) (TRADES and
            MART reference code), or "zero".
        generator: Source of the random start.

    Returns:
        (B, C, H, W) detached adversarial inputs inside the threat model.
    """
    model, x = unwrap(model), x.detach()
    if start == "uniform":
        delta = threat.norm.random_init(x, threat.eps, generator)
    elif start == "normal":
        noise = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device)
        delta = 0.001 * noise.to(device=x.device, dtype=x.dtype)
    else:
        delta = torch.zeros_like(x)
    x_adv = threat.clip(x, x + delta)
    if threat.eps == 0:
        return x_adv
    with attack_mode(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(model(x_adv)).sum(), x_adv)
            x_adv = threat.clip(x, x_adv.detach() + step_size * threat.norm.ascent(grad))
    return x_adv.detach()
