"""A minimal PNG encoder, so reports can embed images without Pillow or matplotlib.

The encoder writes 8-bit grayscale (colour type 0) or 8-bit RGB (colour type 2) images with filter type 0
on every row and one zlib-compressed IDAT chunk, which every browser and image library reads.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
import torch

__all__ = ["encode_png", "image_to_data_uri", "perturbation_to_data_uri"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    """Frame one PNG chunk: length, type, data, and the CRC-32 of type + data."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode an 8-bit image as PNG bytes.

    Args:
        pixels: uint8 array of shape (H, W) for grayscale or (H, W, 3) for RGB; H and W at least 1.

    Returns:
        The complete PNG file.

    Raises:
        TypeError: If `pixels` is not a uint8 numpy array.
        ValueError: If the shape is neither (H, W) nor (H, W, 3), or a side is zero.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        found = f"array of dtype {pixels.dtype}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise TypeError(f"encode_png expects a uint8 numpy array, got {found}")
    if pixels.ndim == 2:
        colour_type = 0
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        colour_type = 2
    else:
        raise ValueError(f"encode_png expects shape (H, W) or (H, W, 3), got {pixels.shape}")
    height, width = pixels.shape[0], pixels.shape[1]
    if height == 0 or width == 0:
        raise ValueError(f"encode_png expects a non-empty image, got shape {pixels.shape}")
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    # Filter type 0 (None): each scanline is a zero byte followed by the raw samples.
    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def _to_chw_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Return `image` as a float64 numpy array of shape (C, H, W) with C in {1, 3}."""
    if isinstance(image, torch.Tensor):
        array = image.detach().to("cpu", torch.float64).numpy()
    elif isinstance(image, np.ndarray):
        array = image.astype(np.float64)
    else:
        raise TypeError(f"expected a torch.Tensor or numpy array, got {type(image).__name__}")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (C, H, W) with C in {{1, 3}}, got {array.shape}")
    return array


def _png_data_uri(chw: np.ndarray, scale: int) -> str:
    """Convert a (C, H, W) array in [0, 1] into an upsampled PNG data URI."""
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    values = np.nan_to_num(chw, nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    pixels = np.rint(values * 255.0).astype(np.uint8)
    pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")


def image_to_data_uri(image: torch.Tensor | np.ndarray, scale: int = 1) -> str:
    """Encode an image as a `data:image/png;base64,...` URI for an `<img src>`.

    Args:
        image: Image of shape (C, H, W) (or (H, W)) with C in {1, 3} and values in [0, 1]; values outside
            are clamped, NaN becomes 0.
        scale: Integer nearest-neighbour upsampling factor (at least 1).

    Returns:
        The data URI.
    """
    return _png_data_uri(_to_chw_array(image), scale)


def perturbation_to_data_uri(delta: torch.Tensor | np.ndarray, scale: int = 1) -> str:
    """Encode a perturbation, amplified to the full grey range, as a PNG data URI.

    Each value maps to ``0.5 + 0.5 * delta / max|delta|``, so mid grey is no change and black / white are
    the largest decrease / increase; an all-zero perturbation is uniformly mid grey.

    Args:
        delta: Perturbation ``x_adv - x`` of shape (C, H, W) (or (H, W)) with C in {1, 3}.
        scale: Integer nearest-neighbour upsampling factor (at least 1).

    Returns:
        The data URI.
    """
    array = np.nan_to_num(_to_chw_array(delta), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.abs(array).max()) if array.size else 0.0
    amplified = np.full_like(array, 0.5) if peak == 0.0 else 0.5 + 0.5 * array / peak
    return _png_data_uri(amplified, scale)
