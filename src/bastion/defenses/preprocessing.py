"""Input-transformation defenses: JPEG, bit-depth reduction, rounding, median and Gaussian smoothing.

Each was proposed as a defense and each falls to BPDA (Athalye, Carlini & Wagner, ICML 2018,
arXiv:1802.00420): the non-differentiable ones (JPEG, bit depth, rounding) declare the identity as
their backward approximation, median smoothing a Gaussian blur of the same size.
"""

from __future__ import annotations

import io
import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from bastion.defenses.base import DEFENSES, Defense, shattered
from bastion.errors import InputError

__all__ = ["JPEG", "BitDepth", "Gaussian", "Median", "Round", "gaussian_blur"]


def _int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{name} must be an integer {span}, got {value!r}")
    return value


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


@DEFENSES.register("jpeg")
class JPEG(Defense):
    """JPEG compression with a real codec (Pillow), image by image (Guo et al., ICLR 2018, arXiv:1711.00117).

    Pixels are rounded to 8 bits, encoded at `quality` and decoded. The codec has no gradient
    (autograd sees zero); BPDA uses the identity, since JPEG(x) is close to x.

    Args:
        quality: JPEG quality, 1 (strongest compression) to 95.
    """

    name: ClassVar[str] = "jpeg"

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        self.quality = _int("quality", quality, 1, 95)

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"quality": self.quality}

    def forward(self, x: Tensor) -> Tensor:
        """Compress each image of `x` (B, C, H, W) in [0, 1]; C is 1 (greyscale) or 3 (RGB)."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise InputError(f"jpeg needs images of shape (B, 1 or 3, H, W), got {tuple(x.shape)}")
        return shattered(x, self._codec)

    def _codec(self, x: Tensor) -> Tensor:
        if x.shape[0] == 0:
            return x.clone()
        pixels = (x.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        decoded = []
        for image in pixels:
            buffer = io.BytesIO()
            mode = "L" if image.shape[2] == 1 else "RGB"
            Image.fromarray(image[:, :, 0] if mode == "L" else image, mode=mode).save(
                buffer, format="JPEG", quality=self.quality
            )
            buffer.seek(0)
            array = np.asarray(Image.open(buffer).convert(mode), dtype=np.uint8)
            decoded.append(array.reshape(image.shape))
        out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
        return (out.to(device=x.device, dtype=x.dtype) / 255).contiguous()


@DEFENSES.register("bit-depth")
class BitDepth(Defense):
    """Bit-depth reduction (Xu, Evans & Qi, NDSS 2018, arXiv:1704.01155): round pixels to 2^bits levels.

    Args:
        bits: Bits per channel, 1 to 8.
    """

    name: ClassVar[str] = "bit-depth"

    def __init__(self, bits: int = 4) -> None:
        super().__init__()
        self.bits = _int("bits", bits, 1, 8)

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"bits": self.bits}

    def forward(self, x: Tensor) -> Tensor:
        """Quantize `x` in [0, 1] to 2^bits levels (zero gradient almost everywhere)."""
        levels = float(2**self.bits - 1)
        return torch.round(x * levels) / levels


@DEFENSES.register("round")
class Round(Defense):
    """Input quantization torch.round(x * levels) / levels: the simplest shattered gradient.

    Its gradient is zero almost everywhere, so gradient attacks stall and the model looks robust;
    BPDA with the identity breaks it (Athalye et al. 2018, section 4.1).

    Args:
        levels: Quantization steps over [0, 1] (255 rounds to the 8-bit pixel grid).
    """

    name: ClassVar[str] = "round"

    def __init__(self, levels: int = 255) -> None:
        super().__init__()
        self.levels = _int("levels", levels, 1)

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"levels": self.levels}

    def forward(self, x: Tensor) -> Tensor:
        """Round `x` to the grid."""
        levels = float(self.levels)
        return torch.round(x * levels) / levels


def gaussian_blur(x: Tensor, sigma: float, size: int) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) images, reflect-padded, kernel `size` x `size`."""
    half = size // 2
    offsets = torch.arange(size, device=x.device, dtype=x.dtype) - half
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > half else "replicate"
    out = F.pad(x, [half, half, 0, 0], mode=mode)
    out = F.conv2d(out, kernel.view(1, 1, 1, size).repeat(channels, 1, 1, 1), groups=channels)
    out = F.pad(out, [0, 0, half, half], mode=mode)
    return F.conv2d(out, kernel.view(1, 1, size, 1).repeat(channels, 1, 1, 1), groups=channels)


@DEFENSES.register("gaussian")
class Gaussian(Defense):
    """Gaussian smoothing of the input (a differentiable filter: plain gradient attacks apply).

    Args:
        sigma: Standard deviation in pixels.
        size: Kernel side (odd); None gives 2 * ceil(2 sigma) + 1.
    """

    name: ClassVar[str] = "gaussian"
    differentiable = True
    bpda = "exact"

    def __init__(self, sigma: float = 1.0, size: int | None = None) -> None:
        super().__init__()
        self.sigma = _positive("sigma", sigma)
        self.size = 2 * math.ceil(2 * self.sigma) + 1 if size is None else _int("size", size, 1)
        if self.size % 2 == 0:
            raise InputError(f"size must be odd, got {self.size}")

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"sigma": self.sigma, "size": self.size}

    def forward(self, x: Tensor) -> Tensor:
        """Blur `x` (B, C, H, W)."""
        return gaussian_blur(x, self.sigma, self.size)

    def approx(self, x: Tensor) -> Tensor:
        """Already differentiable: the approximation is the filter itself."""
        return self.forward(x)


@DEFENSES.register("median")
class Median(Defense):
    """Median smoothing (Xu, Evans & Qi, NDSS 2018, arXiv:1704.01155), `size` x `size` windows.

    The median's gradient reaches one pixel per window; BPDA uses a Gaussian blur of the same size
    (sigma by OpenCV's rule 0.3 ((size - 1) / 2 - 1) + 0.8) as its smooth stand-in.

    Args:
        size: Window side, odd.
    """

    name: ClassVar[str] = "median"
    bpda = "gaussian"

    def __init__(self, size: int = 3) -> None:
        super().__init__()
        self.size = _int("size", size, 1)
        if self.size % 2 == 0:
            raise InputError(f"size must be odd, got {self.size}")

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"size": self.size}

    def forward(self, x: Tensor) -> Tensor:
        """Median of each pixel's window (reflect padding), shape kept."""
        half = self.size // 2
        b, c, h, w = x.shape
        mode = "reflect" if min(h, w) > half else "replicate"
        padded = F.pad(x, [half] * 4, mode=mode)
        windows = F.unfold(padded.reshape(b * c, 1, h + 2 * half, w + 2 * half), self.size)
        return windows.median(dim=1).values.view(b, c, h, w)

    def approx(self, x: Tensor) -> Tensor:
        """Gaussian blur of the same size."""
        return gaussian_blur(x, 0.3 * ((self.size - 1) / 2 - 1) + 0.8, self.size)
