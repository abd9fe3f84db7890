"""Feature squeezers: input transformations that remove detail an adversary relies on.

Xu, Evans & Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks"
(NDSS 2018, arXiv:1704.01155), section IV: bit-depth reduction and median smoothing. Each squeezer
maps a batch (B, C, H, W) in [0, 1] to a batch of the same shape, and has a differentiable
counterpart for adaptive attacks (`differentiable`): the same values on the forward pass, and a
backward pass an attacker can follow (BPDA, Athalye, Carlini & Wagner, ICML 2018, arXiv:1802.00420).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch.nn.functional as F
from torch import Tensor

from bastion.errors import InputError

__all__ = ["BitDepth", "MedianSmoothing", "Squeezer", "parse_squeezer"]


@runtime_checkable
class Squeezer(Protocol):
    """A shape-preserving transformation of a batch of images in [0, 1]."""

    @property
    def name(self) -> str:
        """Short name for reports, e.g. "bit-depth:1"."""
        ...

    def __call__(self, x: Tensor) -> Tensor:
        """The squeezed batch."""
        ...

    def differentiable(self, x: Tensor) -> Tensor:
        """Same forward values as `__call__`, with a gradient an attacker can follow."""
        ...


@dataclass(frozen=True)
class BitDepth:
    """Reduce each pixel to `bits` bits: round(x * (2^bits - 1)) / (2^bits - 1) (Xu et al., eq. in IV-A).

    Rounding has a zero gradient almost everywhere, so `differentiable` uses the straight-through
    estimator (BPDA with the identity as the approximation).

    Args:
        bits: Bits per pixel, 1 to 8; 1 bit (binarization at 0.5) is Xu et al.'s choice for MNIST,
            5 bits for CIFAR-10.
    """

    bits: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise InputError(f"bit depth must be an integer from 1 to 8, got {self.bits!r}")

    @property
    def name(self) -> str:
        """E.g. "bit-depth:1"."""
        return f"bit-depth:{self.bits}"

    def __call__(self, x: Tensor) -> Tensor:
        """Quantize to 2^bits levels in [0, 1]."""
        levels = 2**self.bits - 1
        squeezed: Tensor = (x * levels).round() / levels
        return squeezed

    def differentiable(self, x: Tensor) -> Tensor:
        """Straight-through: the quantized values forward, the identity's gradient backward."""
        return x + (self(x) - x).detach()


@dataclass(frozen=True)
class MedianSmoothing:
    """Median filter over a `size` x `size` window, per channel (Xu et al., section IV-B).

    Follows `scipy.ndimage.median_filter` (the authors' implementation): the window of an even size
    reaches one pixel further up/left than down/right, the median of an even count is the upper
    one (rank floor(n/2) of n), and borders repeat the edge pixel (scipy's default "reflect" mode,
    identical to edge replication for the 2x2 and 3x3 windows used here). The selected element
    passes the gradient, so `differentiable` is the filter itself.

    Args:
        size: Window side, 2 or more (Xu et al. use 2 and 3).
    """

    size: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 2:
            raise InputError(f"median window size must be an integer >= 2, got {self.size!r}")

    @property
    def name(self) -> str:
        """E.g. "median:2"."""
        return f"median:{self.size}"

    def __call__(self, x: Tensor) -> Tensor:
        """The median-filtered batch, same shape as `x` (B, C, H, W)."""
        if x.dim() != 4:
            raise InputError(f"median smoothing needs images shaped (B, C, H, W), got {tuple(x.shape)}")
        k = self.size
        before, after = k // 2, (k - 1) // 2
        b, c, h, w = x.shape
        padded = F.pad(x.reshape(b * c, 1, h, w), (before, after, before, after), mode="replicate")
        windows = F.unfold(padded, kernel_size=k)  # (B*C, k*k, H*W)
        median = windows.sort(dim=1).values[:, (k * k) // 2, :]
        return median.reshape(b, c, h, w)

    def differentiable(self, x: Tensor) -> Tensor:
        """The filter itself: sorting routes the gradient to the median element."""
        return self(x)


def parse_squeezer(spec: str) -> Squeezer:
    """Build a squeezer from text: "bit-depth:N" (or "bits:N") and "median:K".

    Raises:
        InputError: for an unknown kind or a bad number.
    """
    kind, _, value = spec.strip().lower().partition(":")
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"squeezer {spec!r} needs an integer after the colon, e.g. bit-depth:1 or median:2") from None
    if kind in ("bit-depth", "bits", "bitdepth"):
        return BitDepth(number)
    if kind == "median":
        return MedianSmoothing(number)
    raise InputError(f"unknown squeezer {spec!r}; choose bit-depth:N or median:K")
