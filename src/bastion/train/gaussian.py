"""Gaussian noise augmentation, the training of randomized smoothing's base classifier (Cohen et al., 2019)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train.base import TRAINERS, StepOutput, Trainer

__all__ = ["Gaussian"]


@TRAINERS.register("gaussian")
class Gaussian(Trainer):
    """Training under Gaussian noise (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918, section 3.3).

    loss = CE(f(x + sigma * N(0, I)), y), the noise not clipped to the pixel box (as in the
    reference code), so that the base classifier is accurate on the noisy inputs that the smoothed
    classifier g(x) = argmax_c P(f(x + noise) = c) queries. Train with the sigma you will certify with.

    Args:
        sigma: Standard deviation of the noise, in pixel units ([0, 1] images).

    Example:
        >>> out = Gaussian(sigma=0.5).loss(model, x, y, threat)
    """

    name: ClassVar[str] = "gaussian"
    adversarial: ClassVar[bool] = False

    def __init__(self, sigma: float = 0.25) -> None:
        if not sigma >= 0:
            raise InputError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Cross-entropy on the noisy batch."""
        device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        noisy_logits = model(x + self.sigma * noise)
        return StepOutput(F.cross_entropy(noisy_logits, y), adv_logits=noisy_logits.detach())
