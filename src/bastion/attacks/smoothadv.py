"""SmoothAdv: PGD against a Gaussian-smoothed classifier through its Monte Carlo soft prediction."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.attacks.base import ATTACKS, Attack
from bastion.certify.classifier import SmoothedClassifier
from bastion.errors import InputError
from bastion.passes import PassCounter
from bastion.threat import ThreatModel

__all__ = ["SmoothAdv"]


@ATTACKS.register("smoothadv")
class SmoothAdv(Attack):
    """SmoothAdv PGD (Salman et al., NeurIPS 2019, arXiv:1906.04584, eq. 7 / Algorithm 1).

    Maximizes the cross-entropy of the smoothed soft classifier, -log((1/m) sum_j softmax(f(x' + e_j))_y)
    with e_j ~ N(0, sigma^2 I), by normalized-gradient steps projected onto the threat model (the
    paper's threat model is L2; any norm works). The m noise draws are fixed for the whole run, as in
    the paper's code, so each step ascends the same Monte Carlo objective.

    Called with a `SmoothedClassifier`, it differentiates through its base model, takes sigma from it,
    and the final check judges success on the smoothed prediction itself (misclassified or abstaining:
    an empirical upper bound on g's robust accuracy, to compare with the certified one). Called with
    any other model, that model is the base classifier f, and success means f misclassifies x_adv.

    Args:
        sigma: Noise standard deviation of the smoothing; None takes the `SmoothedClassifier`'s, or
            0.25 (Cohen et al.'s middle setting) for a plain base model.
        n_samples: Noise draws m averaged per step (the paper uses 1 to 8; more is a stronger attack).
        steps: Gradient steps.
        rel_step: Step size as a fraction of eps; None gives the paper's 2 / steps.
        fresh_noise: Draw new noise at every step (an EOT variant) instead of fixing it.

    Example:
        >>> smoothed = SmoothedClassifier(base, num_classes=10, sigma=0.5, n=1000)
        >>> result = SmoothAdv(n_samples=8, steps=10)(smoothed, x, y, ThreatModel("l2", 0.5))
    """

    name: ClassVar[str] = "smoothadv"

    def __init__(self, sigma: float | None = None, n_samples: int = 8, steps: int = 10,
                 rel_step: float | None = None, fresh_noise: bool = False) -> None:
        if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
            raise InputError(f"sigma must be > 0, got {sigma}")
        if int(n_samples) < 1 or int(steps) < 1:
            raise InputError(f"n_samples and steps must be >= 1, got {n_samples} and {steps}")
        if rel_step is not None and not rel_step > 0:
            raise InputError(f"rel_step must be > 0, got {rel_step}")
        self.sigma, self.n_samples, self.steps = sigma, int(n_samples), int(steps)
        self.rel_step, self.fresh_noise = rel_step, bool(fresh_noise)

    def _base_and_sigma(self, model: nn.Module) -> tuple[nn.Module, float]:
        inner = model.model if isinstance(model, PassCounter) else model
        if isinstance(inner, SmoothedClassifier):
            return inner.base, self.sigma if self.sigma is not None else inner.sigma
        return model, self.sigma if self.sigma is not None else 0.25

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
        """Ascend the smoothed soft classifier's loss (descend it towards `target` when targeted)."""
        base, sigma = self._base_and_sigma(model)
        sign, labels = (1.0, y) if target is None else (-1.0, target)
        step = (self.rel_step if self.rel_step is not None else 2.0 / self.steps) * threat.eps
        noise = self._noise(x, sigma, generator)
        x_cur = x.clone()
        for _ in range(self.steps):
            x_cur.requires_grad_(True)
            noisy = (x_cur.unsqueeze(0) + noise).flatten(0, 1)  # (m * B, C, H, W), sample-major
            probs = F.softmax(base(noisy), dim=1).view(self.n_samples, len(x), -1).mean(0)
            loss = F.nll_loss(probs.clamp_min(1e-20).log(), labels, reduction="none")
            (grad,) = torch.autograd.grad(sign * loss.sum(), x_cur)
            x_cur = threat.clip(x, x_cur.detach() + step * threat.norm.ascent(grad))
            if self.fresh_noise:
                noise = self._noise(x, sigma, generator)
        return x_cur

    def _noise(self, x: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
        """(m, B, C, H, W) Gaussian noise, drawn on the generator's device and moved to x's."""
        device = generator.device if generator is not None else x.device
        shape = (self.n_samples, *x.shape)
        return (sigma * torch.randn(shape, generator=generator, device=device, dtype=x.dtype)).to(x.device)
