"""Differentiable, batched affine image transforms (rotation, translation, scale) on `affine_grid`/`grid_sample`.

Shared by the spatial attack (Engstrom et al., ICML 2019, arXiv:1712.02779), which searches over the
angle and translation, and the adversarial patch (Brown et al., 2017, arXiv:1712.09665), whose
expectation over transformation places, scales and rotates the patch at random. Angles are in
degrees, translations in pixels (positive = right / down), and every parameter is a (B,) tensor, so
one call transforms a batch with a different transformation per image and gradients flow to the
parameters as well as to the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

__all__ = ["affine_theta", "rotate_translate", "warp"]


def affine_theta(angle: Tensor, tx: Tensor, ty: Tensor, height: int, width: int, scale: Tensor | None = None) -> Tensor:
    """The (B, 2, 3) sampling matrices of `F.affine_grid` for "scale, rotate by `angle`, then shift by (tx, ty)".

    `affine_grid` maps each output location to the input location it reads from, in coordinates
    normalized to [-1, 1] per axis (align_corners=False). With S = diag(2/W, 2/H) the pixel-to-
    normalized scaling, the forward map p -> s R(a) p + t has the inverse p_in = R(-a)(p_out - t) / s,
    which in normalized coordinates is A = S R(-a) S^-1 / s and b = -A t_n with t_n = S t: the
    rotation stays a true rotation on non-square images.

    Args:
        angle: (B,) rotation in degrees (clockwise as displayed, the y axis pointing down).
        tx: (B,) horizontal shift in pixels.
        ty: (B,) vertical shift in pixels.
        height: Image height H.
        width: Image width W.
        scale: (B,) zoom factor (> 0), or None for 1.
    """
    radians = angle * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    inv = 1.0 if scale is None else 1.0 / scale
    # R(-a) = [[cos, sin], [-sin, cos]]; conjugated by S, divided by the scale.
    a11, a12 = cos * inv, sin * (height / width) * inv
    a21, a22 = -sin * (width / height) * inv, cos * inv
    txn, tyn = tx * (2.0 / width), ty * (2.0 / height)
    b1 = -(a11 * txn + a12 * tyn)
    b2 = -(a21 * txn + a22 * tyn)
    return torch.stack([torch.stack([a11, a12, b1], dim=1), torch.stack([a21, a22, b2], dim=1)], dim=1)


def warp(x: Tensor, theta: Tensor, *, padding_mode: str = "zeros") -> Tensor:
    """Resample the (B, C, H, W) images `x` through the (B, 2, 3) matrices `theta`, bilinearly.

    Rows whose matrix is exactly the identity come back unchanged bit for bit (bilinear resampling at
    the pixel centres is off by float rounding), so "rotate by 0, shift by 0" is the identity.

    Args:
        x: Images.
        theta: From `affine_theta`, in x's dtype and device.
        padding_mode: What fills the area moved in from outside: "zeros" (black), "border" or "reflection".
    """
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    identity = torch.eye(2, 3, dtype=theta.dtype, device=theta.device)
    same = (theta.detach() == identity).flatten(1).all(dim=1).reshape(-1, 1, 1, 1)
    return torch.where(same, x, out)


def rotate_translate(
    x: Tensor, angle: Tensor, tx: Tensor, ty: Tensor, *, scale: Tensor | None = None, padding_mode: str = "zeros"
) -> Tensor:
    """Rotate each image of `x` about its centre by `angle` degrees, then shift it by (tx, ty) pixels."""
    height, width = int(x.shape[-2]), int(x.shape[-1])
    theta = affine_theta(angle.to(x.dtype), tx.to(x.dtype), ty.to(x.dtype), height, width,
                         None if scale is None else scale.to(x.dtype))
    return warp(x, theta, padding_mode=padding_mode)
