"""Randomized smoothing: predict and certify with the smoothed classifier g(x) = argmax_c P(f(x + e) = c).

Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019,
arXiv:1902.02918, Algorithm PREDICT and CERTIFY; e ~ N(0, sigma^2 I) in pixel space, so
normalization belongs inside the base model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from scipy.optimize import brentq
from scipy.stats import beta, binom, binomtest, norm
from torch import Tensor, nn

from bastion.certify.sound import slack
from bastion.certify.votes import count_votes, image_generator
from bastion.errors import InputError
from bastion.passes import model_device_dtype
from bastion.seeding import resolve_generator

__all__ = [
    "Certificate",
    "Smooth",
    "clopper_pearson_lower",
    "max_certifiable_radius",
    "randomized_clopper_pearson_lower",
]


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial proportion.

    Guarantee: if k ~ Binomial(n, p), then P(p >= bound) >= 1 - alpha. It equals
    `scipy.stats.beta.ppf(alpha, k, n - k + 1)` (0 when k = 0), the bound Cohen et al. (2019,
    arXiv:1902.02918) use for pA.

    Args:
        k: Successes, 0 <= k <= n.
        n: Trials, n >= 1.
        alpha: Error probability in (0, 1).
    """
    _check_alpha(alpha)
    if not (isinstance(n, int) and n >= 1 and isinstance(k, int) and 0 <= k <= n):
        raise InputError(f"need integers 0 <= k <= n and n >= 1, got k={k!r}, n={n!r}")
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def randomized_clopper_pearson_lower(k: int, n: int, alpha: float, u: float) -> float:
    """The randomized one-sided Clopper-Pearson lower bound: the p at which P_p(X > k) + u P_p(X = k) = alpha.

    Voracek & Hein (NeurIPS 2024, arXiv:2406.17830), section 3: with u ~ Uniform(0, 1) drawn
    independently of X, the randomized p-value P_p(X > k) + u P_p(X = k) is exactly uniform under
    p, so the bound keeps the guarantee P(p >= bound) >= 1 - alpha while lying at or above the
    Clopper-Pearson bound (u = 1 gives that bound): strictly stronger certificates. u is floored
    at 10 alpha (a smaller bound, so still valid) so that a unanimous count never certifies pA = 1.

    Args:
        k: Successes, 0 <= k <= n.
        n: Trials, n >= 1.
        alpha: Error probability in (0, 1).
        u: The uniform draw, in [0, 1].
    """
    base = clopper_pearson_lower(k, n, alpha)
    u = max(float(u), min(1.0, 10 * alpha))
    if u >= 1.0:
        return base
    if k == n:
        return float((alpha / u) ** (1.0 / n))

    def excess(p: float) -> float:
        return float(binom.sf(k, n, p) + u * binom.pmf(k, n, p)) - alpha

    if excess(base) >= 0:
        return base
    return float(brentq(excess, base, 1.0, xtol=1e-14, rtol=1e-12))


def max_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """Largest radius CERTIFY can return with n samples: sigma * Phi^-1(alpha^(1/n)), reached when all n agree."""
    return sigma * float(norm.ppf(clopper_pearson_lower(n, n, alpha)))


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's answer for one input.

    Attributes:
        prediction: The certified class, or `Smooth.ABSTAIN` (-1).
        radius: L2 radius within which g's prediction is constant (0 when abstaining).
        p_lower: Lower confidence bound on pA, the probability of the top class under noise.
        count: Votes for the selected class among the n estimation samples.
        n: Estimation samples.
        top: The class the n0 selection samples chose (kept when abstaining).
    """

    prediction: int
    radius: float
    p_lower: float
    count: int
    n: int
    top: int

    @property
    def abstained(self) -> bool:
        """Whether CERTIFY abstained."""
        return self.prediction == Smooth.ABSTAIN


class Smooth:
    """The Gaussian-smoothed version of a base classifier (Cohen et al., ICML 2019, arXiv:1902.02918).

    Args:
        base: Maps images (B, C, H, W) in pixel space to logits (B, num_classes). It is run in eval
            mode without parameter gradients, on its own device and dtype.
        num_classes: Number of classes, at least 2.
        sigma: Noise standard deviation, > 0 (pixel scale, e.g. 0.25 or 0.5 for [0, 1] images).
        sound: Sample soundly in floating point (`bastion.certify.sound`, Voracek & Hein, ICLR 2023):
            float64 noise, sums rounded to a grid, and the bound on pA lowered by the rounding slack.

    Example:
        >>> smooth = Smooth(model, num_classes=10, sigma=0.5)
        >>> cert = smooth.certify(x, n0=100, n=100_000, alpha=0.001, generator=torch.Generator().manual_seed(0))
        >>> cert.prediction, cert.radius
    """

    ABSTAIN: ClassVar[int] = -1

    def __init__(self, base: nn.Module, num_classes: int, sigma: float, sound: bool = False) -> None:
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise InputError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise InputError(f"sigma must be a finite number > 0, got {sigma!r}")
        self.base = base
        self.num_classes = num_classes
        self.sigma = float(sigma)
        self.sound = sound

    def __repr__(self) -> str:
        return f"Smooth({type(self.base).__name__}, num_classes={self.num_classes}, sigma={self.sigma})"

    def predict(
        self, x: Tensor, n: int, alpha: float, *, batch_size: int = 1000, generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> int:
        """Cohen et al.'s PREDICT: the top class of n noise samples, or ABSTAIN.

        Guarantee: abstains unless the two-sided binomial test of the top two counts nA, nB
        (`scipy.stats.binomtest(nA, nA + nB, 0.5)`) has p-value <= alpha; then the probability that
        the returned class is not g(x) is at most alpha (over the sampling).

        Args:
            x: One image (C, H, W).
            n: Noise samples, >= 1.
            alpha: Error probability in (0, 1).
            batch_size: Samples per forward pass.
            generator: Source of the noise (on any device); None uses the global one.
            seed: Instead of `generator`: seeds a new generator on `x`'s device.
        """
        generator = resolve_generator(generator, seed, x.device)
        return self.predict_many(x[None], n, alpha, batch_size=batch_size, generators=[generator])[0]

    def predict_many(
        self,
        x: Tensor,
        n: int,
        alpha: float,
        *,
        batch_size: int = 1000,
        generators: Sequence[torch.Generator | None] | None = None,
    ) -> list[int]:
        """PREDICT for each image of a batch (B, C, H, W), noise packed across images; same guarantee per image."""
        self.check_settings(n=n, alpha=alpha, batch_size=batch_size)
        _check_images(x)
        counts = count_votes(self.base, x, n, self.sigma, self.num_classes, batch_size=batch_size,
                             generators=generators or [None] * len(x))
        return self.decide(counts, alpha)

    def decide(self, counts: Tensor, alpha: float) -> list[int]:
        """PREDICT's decision from (B, num_classes) vote counts: the top class, or ABSTAIN.

        It abstains unless the two-sided binomial test of the top two counts has p-value <= alpha.
        """
        top2 = counts.cpu().topk(2, dim=1)
        return [c if binomtest(int(a), int(a + b), 0.5).pvalue <= alpha else self.ABSTAIN
                for (a, b), c in zip(top2.values.tolist(), top2.indices[:, 0].tolist(), strict=True)]

    def certify(
        self,
        x: Tensor,
        n0: int,
        n: int,
        alpha: float,
        *,
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> Certificate:
        """Cohen et al.'s CERTIFY: select the top class with n0 samples, bound its probability with n fresh ones.

        Guarantee: with probability at least 1 - alpha over the sampling, if the answer is not
        ABSTAIN then the smoothed classifier g predicts `prediction` at every x' with
        ||x' - x||_2 < radius, where radius = sigma * Phi^-1(pA_lower) and pA_lower is the
        one-sided Clopper-Pearson bound; it abstains when pA_lower < 1/2.

        Args:
            x: One image (C, H, W).
            n0: Selection samples, >= 1.
            n: Estimation samples, >= 1.
            alpha: Error probability in (0, 1).
            batch_size: Samples per forward pass.
            generator: Source of the noise (on any device); None uses the global one.
            seed: Instead of `generator`: seeds a new generator on `x`'s device.
        """
        generator = resolve_generator(generator, seed, x.device)
        return self.certify_many(x[None], n0, n, alpha, batch_size=batch_size, generators=[generator])[0]

    def certify_many(
        self,
        x: Tensor,
        n0: int,
        n: int,
        alpha: float,
        *,
        batch_size: int = 1000,
        seed: int = 0,
        indices: Sequence[int] | None = None,
        generators: Sequence[torch.Generator | None] | None = None,
        uniforms: Sequence[float | None] | None = None,
    ) -> list[Certificate]:
        """CERTIFY for a batch (B, C, H, W), noise of several images packed into each forward pass.

        Same guarantee as `certify`, for each image separately. By default image b draws its noise
        from `image_generator(seed, indices[b])` on the model's device, so the result equals
        `certify(x[b], ..., generator=image_generator(seed, indices[b], device))` whatever the
        other images are (up to floating-point ties of the base model across batch shapes).

        Args:
            x: Images (B, C, H, W).
            n0: Selection samples per image, >= 1.
            n: Estimation samples per image, >= 1.
            alpha: Error probability in (0, 1).
            batch_size: Samples per forward pass.
            seed: Seed of the per-image generators.
            indices: Identity of each image for its generator (e.g. its dataset index); default 0..B-1.
            generators: Explicit generators, one per image (overrides `seed` and `indices`).
            uniforms: Per image, a Uniform(0, 1) draw independent of its noise: the randomized
                Clopper-Pearson bound instead of the plain one (None entries keep the plain one).
        """
        self.check_settings(n=n, n0=n0, alpha=alpha, batch_size=batch_size)
        _check_images(x)
        if generators is None:
            device = model_device_dtype(self.base)[0]
            ids = list(range(len(x))) if indices is None else [int(i) for i in indices]
            if len(ids) != len(x):
                raise InputError(f"need one index per image ({len(x)}), got {len(ids)}")
            generators = [image_generator(seed, i, device) for i in ids]
        # Selection and estimation samples are kept apart (fresh draws), as CERTIFY requires.
        selection = count_votes(self.base, x, n0, self.sigma, self.num_classes, batch_size=batch_size,
                                generators=generators, sound=self.sound)
        estimation = count_votes(self.base, x, n, self.sigma, self.num_classes, batch_size=batch_size,
                                 generators=generators, sound=self.sound)
        margin = slack(x, self.sigma) if self.sound else 0.0
        tops = selection.argmax(1)
        hits = estimation.gather(1, tops[:, None]).squeeze(1).tolist()
        draws = list(uniforms) if uniforms is not None else [None] * len(x)
        return [self.certificate(int(top), int(k), n, alpha, u, margin)
                for top, k, u in zip(tops.tolist(), hits, draws, strict=True)]

    def certificate(self, top: int, k: int, n: int, alpha: float, u: float | None = None,
                    margin: float = 0.0) -> Certificate:
        """CERTIFY's answer from `k` votes for the selected class `top` among `n` estimation samples.

        With `u` (a Uniform(0, 1) draw independent of the samples) the bound is the randomized
        Clopper-Pearson one (`randomized_clopper_pearson_lower`), same guarantee, never smaller.
        `margin` is subtracted from the bound (the floating-point slack of sound sampling).
        """
        p_lower = clopper_pearson_lower(k, n, alpha) if u is None else randomized_clopper_pearson_lower(k, n, alpha, u)
        p_lower = max(0.0, p_lower - margin)
        if p_lower < 0.5:
            return Certificate(self.ABSTAIN, 0.0, p_lower, k, n, top)
        return Certificate(top, self.sigma * float(norm.ppf(p_lower)), p_lower, k, n, top)

    @staticmethod
    def check_settings(*, n: int, alpha: float, batch_size: int, n0: int = 1) -> None:
        """Raise `InputError` (one line) unless n, n0, batch_size are integers >= 1 and 0 < alpha < 1."""
        for name, value in (("n", n), ("n0", n0), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        _check_alpha(alpha)


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise InputError(f"alpha must lie in (0, 1), got {alpha!r}")


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise InputError("x must be a floating-point image tensor: (C, H, W) for one image, (B, C, H, W) for many")
