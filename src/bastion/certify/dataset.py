"""Certify every image of a data set, several images per forward pass, one row per image."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bastion.certify.iss import certify_iss
from bastion.certify.plan import PlannedPoint, certify_planned, plan_samples
from bastion.certify.procedure import Procedure
from bastion.certify.sequential import certify_sequential
from bastion.certify.smoothing import Certificate, Smooth
from bastion.certify.votes import image_generator
from bastion.data import ImageSet
from bastion.passes import model_device_dtype
from bastion.progress import progress_bar

__all__ = ["UNIFORM_STREAM", "certify_dataset", "group_size"]

UNIFORM_STREAM = "randomized-clopper-pearson"  # the stream of each point's uniform draw (randomized bound)


def group_size(n0: int, batch_size: int) -> int:
    """Images certified together (`batch_size // n0`, at least 1): their selection samples fill a forward pass.

    A sharded run (`bastion.distributed.shard_chunks`) deals out chunks of this size, so each
    process runs the very forward passes a single process would, and gets the same numbers.
    """
    return max(1, batch_size // n0)


def certify_dataset(
    model: nn.Module,
    data: ImageSet,
    *,
    sigma: float,
    procedure: Procedure,
    batch_size: int = 1000,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    progress: bool = False,
    on_group: Callable[[list[dict[str, Any]]], None] | None = None,
    plan: Mapping[int, PlannedPoint] | None = None,
) -> list[dict[str, Any]]:
    """Certify each image of `data` by randomized smoothing with `procedure` (see `bastion.certify.procedure`).

    Guarantee, per image: with probability at least 1 - alpha over its noise, a non-abstaining
    row's prediction is the smoothed classifier's at every point within L2 distance `radius`
    (Cohen et al., ICML 2019, arXiv:1902.02918; the sequential and ISS procedures keep it).

    Images go in groups of `batch_size // n0` so that the selection samples of a group fill a
    forward pass; image i draws its noise from `image_generator(seed, indices[i])`, so a row does not
    depend on the group it was in, nor on which other images were certified.

    Args:
        model: The base classifier, on its device; its outputs must have `data.num_classes` columns.
        data: The images to certify.
        sigma: Noise standard deviation, > 0.
        procedure: Fixed-n CERTIFY, sequential decisions or ISS, with n0, n and alpha.
        batch_size: Noise samples per forward pass.
        seed: Seed of the per-image generators.
        indices: The images' indices in their data set (recorded, and seeding their noise); default 0..N-1.
        progress: Show a progress bar over images.
        on_group: Called with the rows of each group as soon as it is done (e.g. to save them).
        plan: ISS with the global allocation: every point's class and sample size, planned over
            all points of the run (`bastion.certify.plan.plan_samples`); None plans over `data`.

    Returns:
        One dict per image: index, label, prediction (-1 = abstain), radius, correct, p_lower (None
        for sequential rows), count, n (estimation samples), samples (base-model forward samples,
        selection included), seconds (the wall time of its group divided by the group's size), and
        for sequential rows `decisions` (radius -> certified / refuted / budget).
    """
    Smooth(model, data.num_classes, sigma)  # checks sigma and the class count
    Smooth.check_settings(n=procedure.n, n0=procedure.n0, alpha=procedure.alpha, batch_size=batch_size)
    ids = list(range(len(data))) if indices is None else [int(i) for i in indices]
    device, dtype = model_device_dtype(model)
    group = group_size(procedure.n0, batch_size)
    if plan is None and procedure.kind == "iss" and procedure.allocation == "global":
        plan = plan_samples(model, data, sigma=sigma, procedure=procedure, batch_size=batch_size, seed=seed,
                            indices=ids)
    rows: list[dict[str, Any]] = []
    with progress_bar(len(data), desc="certify", unit="image", enabled=progress) as bar:
        for start in range(0, len(data), group):
            stop = min(start + group, len(data))
            x, y = data.batch(slice(start, stop), device=device, dtype=dtype)
            began = time.perf_counter()
            found = _certify_group(model, x, data.num_classes, sigma, procedure, batch_size, seed, ids[start:stop],
                                   plan)
            seconds = (time.perf_counter() - began) / (stop - start)
            done = [{"index": ids[start + offset], "label": int(label), **row,
                     "correct": row["prediction"] == label, "seconds": seconds}
                    for offset, (row, label) in enumerate(zip(found, y.tolist(), strict=True))]
            if on_group is not None:
                on_group(done)
            rows += done
            bar.update(stop - start)
    return rows


def _certify_group(model: nn.Module, x: torch.Tensor, num_classes: int, sigma: float, procedure: Procedure,
                   batch_size: int, seed: int, ids: Sequence[int],
                   plan: Mapping[int, PlannedPoint] | None = None) -> list[dict[str, Any]]:
    """The rows (without index, label and time) of one group of images."""
    device = model_device_dtype(model)[0]
    generators = [image_generator(seed, i, device) for i in ids]
    p = procedure
    if p.kind == "sequential":
        found = certify_sequential(model, x, num_classes=num_classes, sigma=sigma, radii=p.radii, n0=p.n0,
                                   budget=p.n, alpha=p.alpha, batch_size=batch_size, generators=generators,
                                   sound=p.sound)
        return [{"prediction": c.prediction, "radius": c.radius, "p_lower": None, "count": c.count, "n": c.n,
                 "samples": c.samples, "decisions": c.decisions} for c in found]
    uniforms = ([float(torch.rand((), generator=image_generator(seed, i, stream=UNIFORM_STREAM))) for i in ids]
                if p.randomized else [None] * len(ids))
    if p.kind == "iss" and plan is not None:
        pairs = certify_planned(model, x, [plan[i] for i in ids], num_classes=num_classes, sigma=sigma, alpha=p.alpha,
                                batch_size=batch_size, generators=generators, uniforms=uniforms, sound=p.sound)
    elif p.kind == "iss":
        pairs = certify_iss(model, x, num_classes=num_classes, sigma=sigma, n0=p.n0, budget=p.n, alpha=p.alpha,
                            decline=p.decline, batch_size=batch_size, generators=generators, uniforms=uniforms,
                            sound=p.sound)
    else:
        certificates = Smooth(model, num_classes, sigma, sound=p.sound).certify_many(
            x, p.n0, p.n, p.alpha, batch_size=batch_size, generators=generators, uniforms=uniforms)
        pairs = [(c, p.n0 + p.n) for c in certificates]
    return [_row(c, samples) for c, samples in pairs]


def _row(cert: Certificate, samples: int) -> dict[str, Any]:
    return {"prediction": cert.prediction, "radius": cert.radius, "p_lower": cert.p_lower, "count": cert.count,
            "n": cert.n, "samples": samples}
