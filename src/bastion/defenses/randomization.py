"""Random resizing and padding (Xie, Wang, Zhang, Ren & Yuille, ICLR 2018, arXiv:1711.01991)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.defenses.base import DEFENSES, Defense
from bastion.errors import InputError

__all__ = ["ResizePad"]


@DEFENSES.register("resize-pad")
class ResizePad(Defense):
    """Resize each image to a random side in [H, scale H], zero-pad it at a random offset, resize back.

    Xie et al. resize 299 -> [299, 331) and pad to 331; the model here keeps its input size, so the
    padded image is resized back to H x W (bilinear). Differentiable but random: attack it with EOT
    (Athalye et al., ICML 2018, arXiv:1802.00420, section 4.2), averaging gradients over draws.

    Args:
        scale: Largest size as a multiple of the input's (Xie et al.: 331 / 299, about 1.1).
        seed: Seed of the defense's own generator (its randomness is part of the model).
    """

    name: ClassVar[str] = "resize-pad"
    differentiable = True
    random = True
    bpda = "exact"

    def __init__(self, scale: float = 1.15, seed: int = 0) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1.0 < scale <= 4.0:
            raise InputError(f"scale must be a number in (1, 4], got {scale!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed must be an integer, got {seed!r}")
        self.scale, self.seed = float(scale), seed
        self._generator = torch.Generator().manual_seed(seed)

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"scale": self.scale, "seed": self.seed}

    def reseed(self, seed: int) -> None:
        """Restart the draws of the defense's own generator from `seed`."""
        self._generator.manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        """One random resize-and-pad per image of `x` (B, C, H, W); shape kept."""
        h, w = x.shape[-2:]
        side_h, side_w = max(h + 1, round(h * self.scale)), max(w + 1, round(w * self.scale))
        out = []
        for image in x:
            rh = int(torch.randint(h, side_h + 1, (1,), generator=self._generator))
            rw = max(w, round(rh * w / h))
            resized = F.interpolate(image[None], size=(rh, min(rw, side_w)), mode="nearest")
            top = int(torch.randint(0, side_h - rh + 1, (1,), generator=self._generator))
            left = int(torch.randint(0, side_w - resized.shape[-1] + 1, (1,), generator=self._generator))
            padded = F.pad(resized, [left, side_w - resized.shape[-1] - left, top, side_h - rh - top])
            out.append(F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False))
        return torch.cat(out) if out else x

    def approx(self, x: Tensor) -> Tensor:
        """Differentiable already: the approximation is the (random) transform itself."""
        return self.forward(x)
