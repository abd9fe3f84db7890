"""Transfer attacks: adversarial examples crafted on a surrogate model, then tried on the target."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.attacks.base import ATTACKS, Attack
from bastion.errors import InputError
from bastion.losses import get_loss
from bastion.models.loading import load_model
from bastion.passes import attack_mode
from bastion.threat import ThreatModel

__all__ = ["Transfer", "diverse_input"]


def diverse_input(x: Tensor, prob: float, scale: float, generator: torch.Generator | None) -> Tensor:
    """Input diversity (Xie et al., CVPR 2019, arXiv:1803.06978): with probability `prob`, a random resize and pad.

    The batch is resized to a random side in [H, scale H), zero-padded at a random offset to
    scale H, and resized back to H x W (bilinear, differentiable); otherwise it is returned as is.
    """
    draw = torch.rand(4, generator=generator)
    if float(draw[0]) >= prob:
        return x
    h, w = x.shape[-2:]
    big_h, big_w = max(h + 1, round(h * scale)), max(w + 1, round(w * scale))
    rh, rw = h + int(draw[1] * (big_h - h)), w + int(draw[1] * (big_w - w))
    resized = F.interpolate(x, size=(rh, rw), mode="nearest")
    top, left = int(draw[2] * (big_h - rh + 1)), int(draw[3] * (big_w - rw + 1))
    padded = F.pad(resized, [left, big_w - rw - left, top, big_h - rh - top])
    return F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False)


@ATTACKS.register("transfer")
class Transfer(Attack):
    """Momentum iterative attack on a surrogate (MI-FGSM: Dong et al., CVPR 2018, arXiv:1710.06081, Algorithm 1).

    g_{t+1} = decay g_t + grad / ||grad||_1, x_{t+1} = clip(x_t + step * ascent(g_{t+1})), with the
    gradient taken on the surrogate only; the target model is queried once, for the final check.
    `decay=0` gives plain iterative FGSM / PGD; `diversity > 0` adds input diversity (DI-MI-FGSM,
    Xie et al., CVPR 2019). A transfer attack that beats white-box attacks on the target is a
    tell-tale sign of gradient masking (Athalye et al., ICML 2018; Carlini et al. 2019, arXiv:1902.06705).

    Args:
        surrogate: The model the examples are crafted on: an `nn.Module`, a model spec
            (`zoo:mnist-cnn`, `module:factory`, ...), or None to craft on the attacked model itself
            (a white-box MI-FGSM).
        steps: Iterations.
        rel_step: Step size as a fraction of eps; None gives 2.5 / steps (Madry et al.'s rule).
        decay: Momentum factor mu (Dong et al.: 1.0); 0 disables momentum.
        diversity: Probability of input diversity per step (Xie et al.: 0.5); 0 disables it.
        scale: Largest resize of input diversity, as a multiple of the input size.
        loss: "ce" or "cw".
        surrogate_weights: A state dict (or safetensors file) for a `surrogate` spec built by a factory.

    Example:
        >>> Transfer(surrogate="zoo:mnist-cnn", diversity=0.5)(defended, x, y, ThreatModel("linf", 0.3))
    """

    name: ClassVar[str] = "transfer"
    #: Options `bastion attack transfer` refuses to run without, and why (read by the CLI): without a
    #: surrogate this class is a white-box MI-FGSM, which the command line must not label "transfer".
    cli_required: ClassVar[dict[str, str]] = {
        "surrogate": "the model the examples are crafted on, e.g. --surrogate zoo:mnist-cnn (without one the "
        "gradients would come from the attacked model itself: a white-box MI-FGSM, not a transfer attack)",
    }

    def __init__(
        self,
        surrogate: str | nn.Module | None = None,
        steps: int = 10,
        rel_step: float | None = None,
        decay: float = 1.0,
        diversity: float = 0.0,
        scale: float = 1.1,
        loss: str = "ce",
        surrogate_weights: str | None = None,
    ) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError(f"steps must be an integer >= 1, got {steps!r}")
        if rel_step is not None and not rel_step > 0:
            raise InputError(f"rel_step must be > 0, got {rel_step}")
        if not decay >= 0:
            raise InputError(f"decay must be >= 0, got {decay}")
        if not 0 <= diversity <= 1:
            raise InputError(f"diversity must lie in [0, 1], got {diversity}")
        if not scale > 1:
            raise InputError(f"scale must be > 1, got {scale}")
        get_loss(loss)
        if isinstance(surrogate, str):
            loaded = load_model(surrogate, weights=surrogate_weights, device="cpu")
            self._surrogate: nn.Module | None = loaded.module
        elif surrogate is None or isinstance(surrogate, nn.Module):
            self._surrogate = surrogate
        else:
            raise InputError(f"surrogate must be a model or a model spec, got {type(surrogate).__name__}")
        self.surrogate = surrogate if isinstance(surrogate, str) or surrogate is None else type(surrogate).__name__
        self.steps, self.rel_step, self.decay = steps, rel_step, float(decay)
        self.diversity, self.scale, self.loss = float(diversity), float(scale), loss
        self.surrogate_weights = surrogate_weights

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Iterate on the surrogate (or on `model` when there is none)."""
        surrogate = model if self._surrogate is None else self._surrogate.to(device=x.device, dtype=x.dtype)
        loss_fn = get_loss(self.loss)
        sign, labels = (1.0, y) if target is None else (-1.0, target)
        step = (self.rel_step if self.rel_step is not None else 2.5 / self.steps) * threat.eps
        momentum = torch.zeros_like(x)
        x_adv = x.clone()
        with attack_mode(surrogate):
            for _ in range(self.steps):
                x_cur = x_adv.detach().requires_grad_(True)
                inputs = diverse_input(x_cur, self.diversity, self.scale, generator) if self.diversity else x_cur
                loss = sign * loss_fn(surrogate(inputs), labels)
                (grad,) = torch.autograd.grad(loss.sum(), x_cur)
                l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
                momentum = self.decay * momentum + grad / l1
                x_adv = threat.clip(x, x_adv.detach() + step * threat.norm.ascent(momentum))
        return x_adv
