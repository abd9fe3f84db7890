"""Radius mode with a global sample allocation: pilot every point, plan all sizes at once, then estimate.

Chen et al., "Input-Specific Robustness Certification for Randomized Smoothing" (AAAI 2022,
arXiv:2112.12084) give each point a sample size from a pilot estimate of pA; here the sizes are
chosen together (`bastion.certify.allocation.allocate`): the fewest samples in all such that the
*mean* expected radius decline against n = N, over the points the plan expects to certify, is at
most `decline` (one point may lose more, another nothing).

Three steps, each deterministic given the seed:
1. Pilot (`pilot_points`): each point's selection (n0 samples) and, where it plans a large n on its
   own, `refine` more (`bastion.certify.iss.pilot_votes`), all drawn from the point's own stream
   `PILOT_STREAM` (`image_generator(seed, index, stream=PILOT_STREAM)`). Every pilot sample counts
   in the point's `samples`.
2. Plan (`plan_samples`): `allocate` over every point's pilot. Under torchrun each process pilots
   its own points and the pilots are gathered (`gather`, e.g. `bastion.distributed.all_gather`), so
   no pilot is drawn twice; a resumed run pilots its finished points again (same stream, same
   counts). The plan is a function of the set of pilots alone, so sharding and --resume do not
   change it.
3. Estimate (`certify_planned`): CERTIFY's bound on n_i fresh samples from the point's main stream,
   which the pilot never touches: class and n_i depend only on samples independent of these, so
   CERTIFY's guarantee holds unchanged, per point, whatever the other points' pilots were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bastion.certify.allocation import Pilot, allocate
from bastion.certify.iss import estimate, pilot_votes
from bastion.certify.procedure import Procedure
from bastion.certify.smoothing import Certificate
from bastion.certify.votes import image_generator
from bastion.data import ImageSet
from bastion.passes import model_device_dtype

__all__ = ["PILOT_STREAM", "PlannedPoint", "certify_planned", "pilot_points", "plan_samples"]

PILOT_STREAM = "iss-pilot"  # the pilot's own noise stream: the estimation samples never share its draws

Gather = Callable[[list[Pilot]], list[list[Pilot]]]


@dataclass(frozen=True)
class PlannedPoint:
    """A point's share of the plan.

    Attributes:
        top: The class its pilot selected (the class CERTIFY estimates).
        pilot: Pilot samples drawn (its cost before estimation).
        n: Estimation samples.
    """

    top: int
    pilot: int
    n: int


def pilot_points(model: nn.Module, data: ImageSet, *, sigma: float, procedure: Procedure, batch_size: int,
                 seed: int, indices: Sequence[int] | None = None) -> list[Pilot]:
    """Each image's pilot, from its own `PILOT_STREAM`, in groups whose selection fills a forward pass."""
    ids = list(range(len(data))) if indices is None else [int(i) for i in indices]
    device, dtype = model_device_dtype(model)
    group = max(1, batch_size // procedure.n0)
    out: list[Pilot] = []
    for start in range(0, len(data), group):
        stop = min(start + group, len(data))
        x, _ = data.batch(slice(start, stop), device=device, dtype=dtype)
        generators = [image_generator(seed, i, device, stream=PILOT_STREAM) for i in ids[start:stop]]
        tops, counts, drawn = pilot_votes(model, x, num_classes=data.num_classes, sigma=sigma, n0=procedure.n0,
                                          budget=procedure.n, alpha=procedure.alpha, decline=procedure.decline,
                                          batch_size=batch_size, generators=generators, sound=procedure.sound)
        out += [Pilot(index=i, top=t, count=k, n=n)
                for i, t, k, n in zip(ids[start:stop], tops, counts, drawn, strict=True)]
    return out


def plan_samples(model: nn.Module, data: ImageSet, *, sigma: float, procedure: Procedure, batch_size: int,
                 seed: int, indices: Sequence[int] | None = None,
                 gather: Gather | None = None) -> dict[int, PlannedPoint]:
    """The plan (index -> `PlannedPoint`) of every point: pilot these images, gather all pilots, allocate.

    Args:
        model: The base classifier, on its device.
        data: The images this process pilots (under torchrun its share, finished points included).
        sigma: Noise standard deviation, > 0.
        procedure: An "iss" procedure: n0, n (the reference budget N), alpha, decline, sound.
        batch_size: Noise samples per forward pass.
        seed: Seed of the pilots' streams.
        indices: The images' indices in their data set; default 0..len(data) - 1.
        gather: Every process's pilots from this one's (`bastion.distributed.all_gather`); None
            when this process holds every point.
    """
    mine = pilot_points(model, data, sigma=sigma, procedure=procedure, batch_size=batch_size, seed=seed,
                        indices=indices)
    pilots = [p for part in gather(mine) for p in part] if gather is not None else mine
    sizes = allocate(pilots, budget=procedure.n, alpha=procedure.alpha, sigma=sigma, decline=procedure.decline)
    return {p.index: PlannedPoint(top=p.top, pilot=p.n, n=sizes[p.index]) for p in pilots}


def certify_planned(
    base: nn.Module,
    x: Tensor,
    planned: Sequence[PlannedPoint],
    *,
    num_classes: int,
    sigma: float,
    alpha: float,
    batch_size: int,
    generators: Sequence[torch.Generator | None],
    uniforms: Sequence[float | None] | None = None,
    sound: bool = False,
) -> list[tuple[Certificate, int]]:
    """CERTIFY's estimate for each image of x (B, C, H, W) at its planned class and size: (certificate, samples).

    Guarantee (per image), CERTIFY's: with probability at least 1 - alpha, a non-abstaining
    certificate's class is the smoothed classifier's prediction within L2 distance `radius`
    (`generators` must be the images' main streams, independent of `PILOT_STREAM`).
    """
    return estimate(base, x, tops=[p.top for p in planned], sizes=[p.n for p in planned],
                    spent=[p.pilot for p in planned], num_classes=num_classes, sigma=sigma, alpha=alpha,
                    batch_size=batch_size, generators=generators, uniforms=uniforms, sound=sound)
