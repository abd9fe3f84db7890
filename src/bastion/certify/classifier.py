"""The smoothed classifier as an `nn.Module`, usable anywhere bastion takes a model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.certify.smoothing import Smooth
from bastion.certify.votes import count_votes, input_generator
from bastion.passes import model_device_dtype

__all__ = ["SmoothedClassifier"]


class SmoothedClassifier(nn.Module):
    """g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c) (Cohen et al., ICML 2019, arXiv:1902.02918) as a model.

    `forward` runs PREDICT on each image and returns (B, num_classes + 1) scores: the vote share of
    each class among the `n` noise samples, and a last column, "abstain", set to 2 where the
    binomial test abstains (and 0 elsewhere). So `argmax` is g's prediction, or `num_classes` for
    an abstention, a label no data point has: accuracy tables count abstentions as errors, and
    `prediction == num_classes` picks them out.

    Each image's noise is seeded by (seed, the bytes of the image): the same input always gets the
    same answer, wherever it sits in a batch, so evaluation stages and attacks see a deterministic
    model. The scores are piecewise constant (no useful gradient): attack g with SmoothAdv, which
    differentiates through the base model.

    Guarantee (per image, PREDICT): the probability that a non-abstaining answer differs from g(x)
    is at most alpha over the sampling.

    Args:
        base: The base classifier f, (B, C, H, W) -> (B, num_classes) logits.
        num_classes: Number of classes of f.
        sigma: Noise standard deviation, > 0.
        n: Noise samples per prediction.
        alpha: Error probability of the abstention test, in (0, 1).
        batch_size: Samples per forward pass of the base model.
        seed: Seed mixed into every image's noise.
    """

    def __init__(self, base: nn.Module, num_classes: int, sigma: float, n: int = 100, alpha: float = 0.001,
                 batch_size: int = 1000, seed: int = 0) -> None:
        super().__init__()
        self.base = base
        self.smooth = Smooth(base, num_classes, sigma)
        Smooth.check_settings(n=n, alpha=alpha, batch_size=batch_size)
        self.num_classes, self.sigma, self.n, self.alpha = num_classes, float(sigma), n, alpha
        self.batch_size, self.seed = batch_size, seed

    def extra_repr(self) -> str:
        """The settings, shown by repr(model)."""
        return f"num_classes={self.num_classes}, sigma={self.sigma}, n={self.n}, alpha={self.alpha}, seed={self.seed}"

    def forward(self, x: Tensor) -> Tensor:
        """Vote shares (B, num_classes) and the abstain column (B, 1), on the base model's device and dtype."""
        device, dtype = model_device_dtype(self.base)
        generators = [input_generator(self.seed, image, device) for image in x]
        counts = count_votes(self.base, x, self.n, self.sigma, self.num_classes, batch_size=self.batch_size,
                             generators=generators)
        decisions = self.smooth.decide(counts, self.alpha)
        abstain = torch.tensor([d == Smooth.ABSTAIN for d in decisions], device=device, dtype=dtype)
        return torch.cat([counts.to(dtype) / self.n, 2.0 * abstain[:, None]], dim=1)
