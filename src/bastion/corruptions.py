"""Common corruptions at severities 1-5 (Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261).

Nine of the paper's fifteen corruptions (noise: Gaussian, shot, impulse; blur: Gaussian, motion;
digital: JPEG, brightness, contrast, pixelate), batched in torch, with the severity parameters of the
paper's CIFAR-10-C tables (the ones made for 32x32 images, used for 28x28 MNIST as well). Severity
0 is the identity. Randomness (noise, blur direction) comes only from the `torch.Generator` passed in.
`corruption_accuracy` tabulates accuracy per corruption and severity, and `mean_corruption_error`
computes the paper's corruption error normalized by a baseline model (its eq. for CE^f_c and mCE).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from bastion.data import ImageSet
from bastion.errors import InputError
from bastion.passes import attack_mode
from bastion.transforms import rotate_translate

__all__ = ["CORRUPTIONS", "Corruption", "CorruptionErrors", "CorruptionTable", "corrupt", "corruption_accuracy",
           "mean_corruption_error"]

Apply = Callable[[Tensor, Any, "torch.Generator | None"], Tensor]


def _rand(shape: Sequence[int], generator: torch.Generator | None, like: Tensor, normal: bool = False) -> Tensor:
    device = generator.device if generator is not None else like.device
    draw = torch.randn if normal else torch.rand
    return draw(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


def _gaussian_noise(x: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
    return x + sigma * _rand(x.shape, generator, x, normal=True)


def _shot_noise(x: Tensor, photons: float, generator: torch.Generator | None) -> Tensor:
    """Poisson noise: each pixel is a photon count with mean x * photons, rescaled."""
    device = generator.device if generator is not None else x.device
    counts = torch.poisson((x * photons).to(device, torch.float32), generator=generator)
    return counts.to(x.device, x.dtype) / photons


def _impulse_noise(x: Tensor, amount: float, generator: torch.Generator | None) -> Tensor:
    """Salt-and-pepper: a share `amount` of the values set to 0 or 1, half each."""
    u = _rand(x.shape, generator, x)
    return torch.where(u < amount / 2, torch.ones_like(x), torch.where(u < amount, torch.zeros_like(x), x))


def _gaussian_kernel(sigma: float, radius: int, like: Tensor) -> Tensor:
    d = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    k = torch.exp(-(d**2) / (2 * sigma**2))
    return k / k.sum()


def _gaussian_blur(x: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
    """Separable Gaussian filter, radius 4 sigma, edges replicated (scikit-image's `gaussian`, mode nearest)."""
    radius = max(1, math.ceil(4 * sigma))
    k = _gaussian_kernel(sigma, radius, x)
    channels = int(x.shape[1])
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, k.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(out, k.reshape(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def _motion_blur(x: Tensor, sigma: float, generator: torch.Generator | None) -> Tensor:
    """One-sided Gaussian-weighted streak along a random direction in [-45, 45] degrees (as ImageMagick's).

    The image is averaged with copies of itself shifted by d = 0..3 sigma pixels along the direction,
    weights exp(-d^2 / 2 sigma^2); edges replicated.
    """
    angle = (_rand((len(x),), generator, x) * 90 - 45) * (math.pi / 180)
    radius = max(1, math.ceil(3 * sigma))
    weights = torch.exp(-(torch.arange(radius + 1, dtype=x.dtype, device=x.device) ** 2) / (2 * sigma**2))
    weights = weights / weights.sum()
    zero = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    out = torch.zeros_like(x)
    for d in range(radius + 1):
        shifted = x if d == 0 else rotate_translate(x, zero, d * torch.cos(angle), d * torch.sin(angle),
                                                    padding_mode="border")
        out = out + weights[d] * shifted
    return out


def _jpeg(x: Tensor, quality: int, generator: torch.Generator | None) -> Tensor:
    """Encode and decode each image with Pillow's JPEG codec at `quality`."""
    from PIL import Image

    if int(x.shape[1]) not in (1, 3):
        raise InputError(f"JPEG needs 1 or 3 channels, got {int(x.shape[1])}")
    pixels = np.rint(x.detach().float().cpu().clamp(0, 1).numpy() * 255).astype(np.uint8)
    out = []
    for image in pixels:
        buffer = io.BytesIO()
        array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        Image.fromarray(array, mode="L" if image.shape[0] == 1 else "RGB").save(buffer, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.uint8)
        out.append(decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).to(x.device, x.dtype) / 255


def _brightness(x: Tensor, amount: float, generator: torch.Generator | None) -> Tensor:
    """Add `amount` to the HSV value V = max over channels, hue and saturation kept: rgb * V' / V."""
    value = x.amax(dim=1, keepdim=True)
    brighter = (value + amount).clamp(0, 1)
    return torch.where(value > 0, x * brighter / value.clamp(min=1e-12), brighter.expand_as(x))


def _contrast(x: Tensor, factor: float, generator: torch.Generator | None) -> Tensor:
    """Pull every pixel towards the image's mean: (x - mean) * factor + mean."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def _pixelate(x: Tensor, factor: float, generator: torch.Generator | None) -> Tensor:
    """Resize to `factor` of the size and back with Pillow's BOX filter both ways, as the paper's code does.

    Each channel is resized as a 32-bit float image, so no rounding to 8 bits happens.
    """
    from PIL import Image

    height, width = int(x.shape[-2]), int(x.shape[-1])
    small = (max(1, int(width * factor)), max(1, int(height * factor)))
    planes = x.detach().float().cpu().numpy().reshape(-1, height, width)
    out = [np.asarray(Image.fromarray(p, mode="F").resize(small, Image.Resampling.BOX)
                      .resize((width, height), Image.Resampling.BOX)) for p in planes]
    return torch.from_numpy(np.stack(out)).reshape(x.shape).to(x.device, x.dtype)


@dataclass(frozen=True)
class Corruption:
    """One corruption: its family, its parameter at severities 1-5 and the function that applies it."""

    name: str
    family: str
    parameters: tuple[Any, ...]
    apply: Apply = field(repr=False)

    def __call__(self, x: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
        """Corrupt the (B, C, H, W) images `x` in [0, 1] at `severity` (0 = unchanged copy)."""
        if isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= len(self.parameters):
            raise InputError(f"severity must be an integer in [0, {len(self.parameters)}], got {severity!r}")
        if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise InputError("images must be a float tensor (B, C, H, W) in [0, 1]")
        if severity == 0:
            return x.clone()
        with torch.no_grad():
            return self.apply(x, self.parameters[severity - 1], generator).clamp(0.0, 1.0).to(x.dtype)


#: The severity tables of the paper's CIFAR-10-C code (Hendrycks & Dietterich, 2019).
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("gaussian-noise", "noise", (0.04, 0.06, 0.08, 0.09, 0.10), _gaussian_noise),
    Corruption("shot-noise", "noise", (500, 250, 100, 75, 50), _shot_noise),
    Corruption("impulse-noise", "noise", (0.01, 0.02, 0.03, 0.05, 0.07), _impulse_noise),
    Corruption("gaussian-blur", "blur", (0.4, 0.6, 0.7, 0.8, 1.0), _gaussian_blur),
    Corruption("motion-blur", "blur", (1.0, 1.5, 2.0, 2.5, 3.0), _motion_blur),
    Corruption("jpeg", "digital", (80, 65, 58, 50, 40), _jpeg),
    Corruption("brightness", "digital", (0.05, 0.1, 0.15, 0.2, 0.3), _brightness),
    Corruption("contrast", "digital", (0.75, 0.5, 0.4, 0.3, 0.15), _contrast),
    Corruption("pixelate", "digital", (0.95, 0.9, 0.85, 0.75, 0.65), _pixelate),
)}


def _get(name: str) -> Corruption:
    if name not in CORRUPTIONS:
        raise InputError(f"unknown corruption {name!r}; choose one of: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name]


def corrupt(x: Tensor, name: str, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Apply the corruption `name` at `severity` (0-5) to the images `x`."""
    return _get(name)(x, severity, generator)


@dataclass(frozen=True)
class CorruptionTable:
    """Accuracy of one model under every corruption and severity.

    Attributes:
        clean_accuracy: Accuracy without corruption.
        accuracy: corruption name -> accuracies at `severities`, in order.
        severities: The severities measured.
        n: Points evaluated.
        seed: Seed of the corruptions' randomness.
    """

    clean_accuracy: float
    accuracy: dict[str, list[float]]
    severities: list[int]
    n: int
    seed: int

    @property
    def mean_accuracy(self) -> float:
        """Accuracy averaged over corruptions and severities."""
        values = [a for row in self.accuracy.values() for a in row]
        return sum(values) / len(values) if values else self.clean_accuracy

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"clean_accuracy": self.clean_accuracy, "accuracy": self.accuracy, "severities": self.severities,
                "n": self.n, "seed": self.seed, "mean_accuracy": self.mean_accuracy}


def corruption_accuracy(model: nn.Module, data: ImageSet, *, corruptions: Sequence[str] | None = None,
                        severities: Sequence[int] = (1, 2, 3, 4, 5), batch_size: int = 256, seed: int = 0,
                        device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> CorruptionTable:
    """Accuracy of `model` on `data` under each corruption at each severity.

    Each (corruption, severity) draws from its own generator, seeded by (seed, its position in
    `CORRUPTIONS`, severity): a table is the same whichever subset of corruptions is asked for.
    """
    names = list(CORRUPTIONS) if corruptions is None else [_get(n).name for n in corruptions]
    for s in severities:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 5:
            raise InputError(f"severities must be integers in [0, 5], got {s!r}")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    order = list(CORRUPTIONS)
    correct = {(n, s): 0 for n in names for s in severities}
    clean = 0
    with attack_mode(model), torch.no_grad():
        generators = {(n, s): torch.Generator().manual_seed(seed * 1_000_003 + order.index(n) * 10 + s)
                      for n in names for s in severities}
        for _, x, y in data.batches(batch_size, device=device, dtype=dtype):
            clean += int((model(x).argmax(1) == y).sum())
            for (n, s), generator in generators.items():
                xc = CORRUPTIONS[n](x, s, generator)  # CPU generators: draws are moved to x's device
                correct[n, s] += int((model(xc).argmax(1) == y).sum())
    total = max(len(data), 1)
    table = {n: [correct[n, s] / total for s in severities] for n in names}
    return CorruptionTable(clean / total, table, list(severities), len(data), seed)


@dataclass(frozen=True)
class CorruptionErrors:
    """Corruption errors of a model against a baseline (Hendrycks & Dietterich, 2019, Section 4).

    CE_c = sum_s E_{s,c} / sum_s E_{s,c}^baseline, and the relative CE_c = sum_s (E_{s,c} - E_clean) /
    sum_s (E_{s,c}^baseline - E_clean^baseline); mCE and relative mCE are their means over the
    corruptions. None where the baseline makes no (additional) errors: the ratio is undefined.
    """

    ce: dict[str, float | None]
    relative_ce: dict[str, float | None]
    mce: float | None
    relative_mce: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ce": self.ce, "relative_ce": self.relative_ce, "mce": self.mce, "relative_mce": self.relative_mce}


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 1e-12 else None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def mean_corruption_error(table: CorruptionTable, baseline: CorruptionTable) -> CorruptionErrors:
    """The mCE of `table`'s model normalized by `baseline`'s errors (the paper uses AlexNet as baseline)."""
    if table.severities != baseline.severities or set(table.accuracy) - set(baseline.accuracy):
        raise InputError("the model and the baseline must be measured on the same corruptions and severities")
    ce: dict[str, float | None] = {}
    relative: dict[str, float | None] = {}
    for name, accuracies in table.accuracy.items():
        errors = [1 - a for a in accuracies]
        base = [1 - a for a in baseline.accuracy[name]]
        ce[name] = _ratio(sum(errors), sum(base))
        relative[name] = _ratio(sum(e - (1 - table.clean_accuracy) for e in errors),
                                sum(b - (1 - baseline.clean_accuracy) for b in base))
    return CorruptionErrors(ce, relative, _mean(list(ce.values())), _mean(list(relative.values())))
