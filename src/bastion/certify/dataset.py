"""Certify every image of a data set, several images per forward pass, one row per image."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from torch import nn

from bastion.certify.smoothing import Smooth
from bastion.data import ImageSet
from bastion.passes import model_device_dtype
from bastion.progress import progress_bar

__all__ = ["certify_dataset", "group_size"]


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
    n0: int,
    n: int,
    alpha: float,
    batch_size: int = 1000,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run CERTIFY (Cohen et al., ICML 2019, arXiv:1902.02918) on each image of `data`.

    Guarantee, per image: with probability at least 1 - alpha over its noise, a non-abstaining row's
    prediction is the smoothed classifier's at every point within L2 distance `radius`.

    Images go in groups of `batch_size // n0` so that the selection samples of a group fill a
    forward pass; image i draws its noise from `image_generator(seed, indices[i])`, so a row does not
    depend on the group it was in, nor on which other images were certified.

    Args:
        model: The base classifier, on its device; its outputs must have `data.num_classes` columns.
        data: The images to certify.
        sigma: Noise standard deviation, > 0.
        n0: Selection samples per image.
        n: Estimation samples per image.
        alpha: Error probability in (0, 1).
        batch_size: Noise samples per forward pass.
        seed: Seed of the per-image generators.
        indices: The images' indices in their data set (recorded, and seeding their noise); default 0..N-1.
        progress: Show a progress bar over images.

    Returns:
        One dict per image: index, label, prediction (-1 = abstain), radius, correct, p_lower,
        count, seconds (the wall time of its group divided by the group's size).
    """
    smooth = Smooth(model, data.num_classes, sigma)
    Smooth.check_settings(n=n, n0=n0, alpha=alpha, batch_size=batch_size)
    ids = list(range(len(data))) if indices is None else [int(i) for i in indices]
    device, dtype = model_device_dtype(model)
    group = group_size(n0, batch_size)
    rows: list[dict[str, Any]] = []
    with progress_bar(len(data), desc="certify", unit="image", enabled=progress) as bar:
        for start in range(0, len(data), group):
            stop = min(start + group, len(data))
            x, y = data.batch(slice(start, stop), device=device, dtype=dtype)
            began = time.perf_counter()
            certificates = smooth.certify_many(x, n0, n, alpha, batch_size=batch_size, seed=seed,
                                               indices=ids[start:stop])
            seconds = (time.perf_counter() - began) / (stop - start)
            for offset, (cert, label) in enumerate(zip(certificates, y.tolist(), strict=True)):
                rows.append({"index": ids[start + offset], "label": int(label), "prediction": cert.prediction,
                             "radius": cert.radius, "correct": cert.prediction == label, "p_lower": cert.p_lower,
                             "count": cert.count, "seconds": seconds})
            bar.update(stop - start)
    return rows
