"""Input-specific sample sizes for CERTIFY: a radius per point for a fraction of the fixed-n cost.

Chen et al., "Input-Specific Robustness Certification for Randomized Smoothing" (AAAI 2022,
arXiv:2112.12084), ISS: the radius CERTIFY returns grows with the sample size n ever more slowly,
and how slowly depends on pA. A point with pA = 0.9 loses 0.02 of radius (sigma 0.5) going from
n = 100,000 to 10,000; a point with pA near 1 loses 0.3. ISS reads pA off a pilot and gives each
point the smallest n whose expected radius lies within `decline` of the radius at the full budget N.

Here the pilot is CERTIFY's own selection samples (n0), so it costs nothing extra, and the n
estimation samples are fresh: n is a function of samples independent of them, so the one-sided
Clopper-Pearson bound on those n samples keeps CERTIFY's guarantee unchanged. The planning
estimate of pA is the pilot's one-sided Clopper-Pearson upper bound at `optimism` standard errors
(a near-unanimous pilot cannot tell pA = 0.9995 from 0.99999, and the larger value needs the larger
n; a unanimous one plans with pA = 1), which keeps the realized decline near the stated one.

`certify_iss` caps each point's own decline (Chen et al.'s rule). Radius mode's default caps the
mean decline over all points instead (`bastion.certify.allocation`, `bastion.certify.plan`), with
the same pilot (`pilot_votes`) and estimation step (`estimate`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import beta, norm
from torch import Tensor, nn

from bastion.certify.smoothing import Certificate, Smooth
from bastion.certify.sound import slack
from bastion.certify.votes import count_votes

__all__ = ["certify_iss", "estimate", "expected_radius", "iss_sample_size", "pilot_votes", "planning_p"]


def expected_radius(p: float, n: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """CERTIFY's radius at sample sizes `n` if the top class gets its expected count p * n (0: abstain)."""
    k = p * n
    lower = np.where(k > 0, beta.ppf(alpha, np.maximum(k, 1e-12), n - k + 1), 0.0)
    return np.where(lower > 0.5, sigma * norm.ppf(np.clip(lower, 0.5, 1.0)), 0.0)


def planning_p(count: int, n: int, optimism: float = 1.0) -> float:
    """The pA a plan assumes: the pilot's one-sided Clopper-Pearson upper bound at `optimism` standard errors.

    A unanimous pilot plans with pA = 1: it cannot tell 0.9995 from 0.99999, and the larger value
    needs the larger n (Chen et al. 2022 plan with a point estimate; the upper bound keeps the
    realized decline near the planned one).
    """
    return 1.0 if count >= n else float(beta.ppf(norm.cdf(optimism), count + 1, n - count))


def iss_sample_size(k0: int, n0: int, *, budget: int, alpha: float, sigma: float, decline: float,
                    optimism: float = 1.0, smallest: int = 100) -> int:
    """The estimation samples ISS gives a point whose pilot had `k0` of `n0` votes for the top class.

    Args:
        k0: Pilot votes for the selected class.
        n0: Pilot samples.
        budget: The fixed-n procedure's sample size N, the most a point may get.
        alpha: Error probability of the certificate.
        sigma: Noise standard deviation.
        decline: Largest expected radius loss against n = `budget`, in L2 units.
        optimism: The planning estimate of pA is the pilot's upper confidence bound at this many
            standard errors (one-sided Clopper-Pearson; 1 for a unanimous pilot).
        smallest: The fewest estimation samples a point gets.
    """
    p = planning_p(k0, n0, optimism)  # a unanimous pilot: pA = 1, whose radius keeps growing with n
    if budget <= smallest:
        return budget
    grid = np.unique(np.geomspace(smallest, budget, num=160).round().astype(np.int64))
    radii = expected_radius(p, grid.astype(np.float64), alpha, sigma)
    within = np.nonzero(radii >= radii[-1] - decline)[0]
    return int(grid[within[0]])


def pilot_votes(
    base: nn.Module,
    x: Tensor,
    *,
    num_classes: int,
    sigma: float,
    n0: int,
    budget: int,
    alpha: float,
    decline: float,
    batch_size: int,
    generators: Sequence[torch.Generator | None],
    sound: bool = False,
    refine: int = 2000,
) -> tuple[list[int], list[int], list[int]]:
    """The pilot of each image of x (B, C, H, W): (selected class, its votes, pilot samples) per image.

    The class is CERTIFY's selection over n0 samples. An image whose n0-sample pilot plans more than
    10 x `refine` samples on its own (`iss_sample_size` at `decline`) draws `refine` more: a pilot of
    100 cannot tell pA = 0.995, whose radius stops growing near n = 10,000, from pA = 0.99999, which
    needs the whole budget. Every pilot sample counts in the cost; none is used to estimate.
    """
    selection = count_votes(base, x, n0, sigma, num_classes, batch_size=batch_size, generators=generators,
                            sound=sound)
    tops = selection.argmax(1)
    pilot = [int(k) for k in selection.gather(1, tops[:, None]).squeeze(1).tolist()]
    drawn = [n0] * len(x)
    again = [i for i, k0 in enumerate(pilot) if refine > 0 and iss_sample_size(
        k0, n0, budget=budget, alpha=alpha, sigma=sigma, decline=decline) > 10 * refine]
    if again:
        index = torch.as_tensor(again, device=x.device)
        more = count_votes(base, x[index], refine, sigma, num_classes, batch_size=batch_size,
                           generators=[generators[i] for i in again], sound=sound)
        extra = more.gather(1, tops.to(more.device)[index.to(more.device), None]).squeeze(1).tolist()
        for i, k1 in zip(again, extra, strict=True):
            pilot[i], drawn[i] = pilot[i] + int(k1), n0 + refine
    return [int(t) for t in tops.tolist()], pilot, drawn


def estimate(
    base: nn.Module,
    x: Tensor,
    *,
    tops: Sequence[int],
    sizes: Sequence[int],
    spent: Sequence[int],
    num_classes: int,
    sigma: float,
    alpha: float,
    batch_size: int,
    generators: Sequence[torch.Generator | None],
    uniforms: Sequence[float | None] | None = None,
    sound: bool = False,
) -> list[tuple[Certificate, int]]:
    """CERTIFY's estimation step with `sizes[b]` fresh samples for image b: (certificate, samples) pairs.

    Guarantee (per image), CERTIFY's: with probability at least 1 - alpha over these samples, a
    non-abstaining certificate's class `tops[b]` is the smoothed classifier's prediction within L2
    distance `radius`, provided `tops` and `sizes` do not depend on them. `spent[b]` (the pilot's
    samples) is added to the cost; `uniforms` (a Uniform(0, 1) draw per image, or None) selects the
    randomized bound; `sound` samples soundly in floating point (`bastion.certify.sound`).
    """
    draws = list(uniforms) if uniforms is not None else [None] * len(x)
    smooth = Smooth(base, num_classes, sigma, sound=sound)
    margin = slack(x, sigma) if sound else 0.0
    top = torch.as_tensor(list(tops), dtype=torch.long)
    out: list[tuple[Certificate, int] | None] = [None] * len(x)
    for size in sorted(set(sizes)):  # images of equal n share forward passes
        rows = [i for i, s in enumerate(sizes) if s == size]
        index = torch.as_tensor(rows, device=x.device)
        counts = count_votes(base, x[index], size, sigma, num_classes, batch_size=batch_size,
                             generators=[generators[i] for i in rows], sound=sound)
        hits = counts.gather(1, top.to(counts.device)[index.to(counts.device), None]).squeeze(1).tolist()
        for i, k in zip(rows, hits, strict=True):
            out[i] = (smooth.certificate(int(tops[i]), int(k), size, alpha, draws[i], margin), spent[i] + size)
    return [pair for pair in out if pair is not None]


def certify_iss(
    base: nn.Module,
    x: Tensor,
    *,
    num_classes: int,
    sigma: float,
    n0: int,
    budget: int,
    alpha: float,
    decline: float,
    batch_size: int,
    generators: Sequence[torch.Generator | None],
    uniforms: Sequence[float | None] | None = None,
    sound: bool = False,
    refine: int = 2000,
) -> list[tuple[Certificate, int]]:
    """CERTIFY with a per-point input-specific n (ISS) for each image of x (B, C, H, W); (certificate, samples).

    Each point gets the smallest n whose expected radius lies within `decline` of its own radius at
    n = `budget` (a cap per point; `bastion.certify.allocation` caps the mean instead). The pilot
    (`pilot_votes`) and then the estimation samples come from each image's generator in turn.

    Guarantee (per image), CERTIFY's: with probability at least 1 - alpha, a non-abstaining
    certificate's class is the smoothed classifier's prediction within L2 distance `radius`.
    `uniforms` (one Uniform(0, 1) draw per image, or None) selects the randomized bound; `sound`
    samples soundly in floating point (`bastion.certify.sound`).
    """
    tops, pilot, drawn = pilot_votes(base, x, num_classes=num_classes, sigma=sigma, n0=n0, budget=budget,
                                     alpha=alpha, decline=decline, batch_size=batch_size, generators=generators,
                                     sound=sound, refine=refine)
    sizes = [iss_sample_size(k, n, budget=budget, alpha=alpha, sigma=sigma, decline=decline)
             for k, n in zip(pilot, drawn, strict=True)]
    return estimate(base, x, tops=tops, sizes=sizes, spent=drawn, num_classes=num_classes, sigma=sigma,
                    alpha=alpha, batch_size=batch_size, generators=generators, uniforms=uniforms, sound=sound)
