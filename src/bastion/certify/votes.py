"""Monte Carlo votes of a base classifier under Gaussian noise, packed across images into full batches.

The engine under `Smooth` (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918): it counts
`f(x + N(0, sigma^2 I))` for `num` noise draws per image. Memory is bounded by one reused noise
buffer of `batch_size` samples; counting is a `bincount` on the model's device, so the loop never
waits for the host.

Seeding scheme: the noise of image `b` comes from `generators[b]` alone, drawn in chunks of
`min(batch_size, remaining)` samples. Chunks of several images are packed into one forward pass,
but an image's draws do not depend on which other images share its batches: with one generator
per image (`image_generator(seed, index)`) certifying images together or one at a time gives the
same counts for the same seed and batch size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from bastion.certify.sound import quantize
from bastion.errors import InputError
from bastion.models.checks import checked_logits
from bastion.passes import attack_mode, model_device_dtype

__all__ = ["count_votes", "image_generator", "input_generator"]


def _seed_from(*parts: bytes) -> int:
    digest = hashlib.blake2b(b"\x00".join(parts), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def image_generator(seed: int, index: int, device: torch.device | str = "cpu", stream: str = "") -> torch.Generator:
    """The generator of image `index`'s noise: seeded by a hash of (seed, index), on `device`.

    A non-empty `stream` names another, independent stream of the same image (e.g. the uniform
    draw of the randomized Clopper-Pearson bound), so it never shares draws with the noise.
    """
    parts = [str(int(seed)).encode(), str(int(index)).encode()] + ([stream.encode()] if stream else [])
    return torch.Generator(device=device).manual_seed(_seed_from(*parts))


def input_generator(seed: int, x: Tensor, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by (seed, the bytes of `x`): the same input always gets the same noise."""
    data = x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return torch.Generator(device=device).manual_seed(_seed_from(str(int(seed)).encode(), data))


def _schedule(n_images: int, num: int, batch_size: int) -> Iterator[list[tuple[int, int]]]:
    """Forward batches as lists of (image, rows): each image's chunks, packed greedily in order."""
    batch: list[tuple[int, int]] = []
    rows = 0
    for image in range(n_images):
        left = num
        while left > 0:
            size = min(batch_size, left)
            if rows + size > batch_size:
                yield batch
                batch, rows = [], 0
            batch.append((image, size))
            rows += size
            left -= size
    if batch:
        yield batch


def count_votes(
    base: nn.Module,
    x: Tensor,
    num: int,
    sigma: float,
    num_classes: int,
    *,
    batch_size: int,
    generators: Sequence[torch.Generator | None],
    sound: bool = False,
) -> Tensor:
    """Count the base classifier's labels on `num` Gaussian-noised copies of each image.

    Args:
        base: Maps (B, C, H, W) inputs to (B, num_classes) logits; run in eval mode without
            parameter gradients, on its own device and dtype.
        x: (B, C, H, W) images (moved to the model's device and dtype).
        num: Noise draws per image.
        sigma: Standard deviation of the isotropic Gaussian noise (pixel scale).
        num_classes: Number of classes the base classifier outputs.
        batch_size: Samples per forward pass (the memory bound).
        generators: One generator per image (or the same one repeated; None uses the global
            generator of the model's device). All must live on one device; the noise is drawn there
            and moved to the model's device.
        sound: Draw and add the noise in float64 and round the sums to `bastion.certify.sound.GRID`
            before the model sees them (Voracek & Hein, ICLR 2023): see `bastion.certify.sound`.

    Returns:
        (B, num_classes) int64 counts on the model's device; each row sums to `num`.
    """
    if len(generators) != len(x):
        raise InputError(f"need one generator per image ({len(x)}), got {len(generators)}")
    device, dtype = model_device_dtype(base)
    work = torch.float64 if sound else dtype
    x = x.detach().to(device=device, dtype=work)
    counts = torch.zeros((len(x), num_classes), dtype=torch.long, device=device)
    if num < 1 or len(x) == 0:
        return counts
    first = generators[0]
    noise_device = first.device if first is not None else device
    checked = False
    with attack_mode(base), torch.inference_mode():
        buffer = torch.empty((min(batch_size, len(x) * num), *x.shape[1:]), device=noise_device, dtype=work)
        for batch in _schedule(len(x), num, batch_size):
            rows = sum(size for _, size in batch)
            noise, start = buffer[:rows], 0
            for image, size in batch:
                noise[start : start + size].normal_(0.0, sigma, generator=generators[image])
                start += size
            noisy = noise if noise_device == device else noise.to(device)
            if len(batch) == 1:
                image = batch[0][0]
                noisy.add_(x[image])
                inputs = quantize(noisy, dtype) if sound else noisy
                logits = base(inputs) if checked else _check(base, inputs, num_classes)
                counts[image] += torch.bincount(logits.argmax(1), minlength=num_classes)
            else:
                images = torch.tensor([image for image, _ in batch], device=device)
                slots = torch.repeat_interleave(
                    torch.arange(len(batch), device=device),
                    torch.tensor([size for _, size in batch], device=device),
                    output_size=rows,
                )
                noisy.add_(x[images[slots]])
                inputs = quantize(noisy, dtype) if sound else noisy
                logits = base(inputs) if checked else _check(base, inputs, num_classes)
                votes = torch.bincount(slots * num_classes + logits.argmax(1), minlength=len(batch) * num_classes)
                counts.index_add_(0, images, votes.view(len(batch), num_classes))
            checked = True
    return counts


def _check(base: nn.Module, x: Tensor, num_classes: int) -> Tensor:
    """The first forward pass, with one-line errors for a model that rejects the data or its class count."""
    logits = checked_logits(base, x, num_classes)
    if logits.shape[1] != num_classes:
        raise InputError(f"the base classifier outputs {logits.shape[1]} classes, expected {num_classes}")
    return logits
