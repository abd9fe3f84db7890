"""Decode an uploaded PNG or JPEG into the model's input, refusing what could hurt the server.

Dimensions are checked from the header before any pixel is decoded (a small file can declare a
huge image: a decompression bomb), and a truncated file is refused rather than half-decoded.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from bastion.serve.payloads import RequestError

__all__ = ["decode_image"]

_FORMATS = ("PNG", "JPEG")
_MODES = {1: "L", 3: "RGB"}


def decode_image(data: bytes, shape: tuple[int, int, int], *, max_side: int, resize: bool) -> Tensor:
    """The image in `data` as a (C, H, W) float32 tensor in [0, 1] of the model's `shape`.

    Args:
        data: The file's bytes.
        shape: The model's input (C, H, W); C must be 1 (converted to grayscale) or 3 (RGB).
        max_side: Largest width or height accepted.
        resize: Resize other sizes to (H, W) (bilinear); otherwise refuse them.

    Raises:
        RequestError: 400 for something that is not an image or is truncated, 413 for an image
            over `max_side`, 415 for a format other than PNG and JPEG, 422 for a size the model
            cannot take when `resize` is off.
    """
    channels, height, width = shape
    if not data:
        raise RequestError(400, "the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise RequestError(413, f"the image is too large: {str(error).splitlines()[0]}") from None
    except UnidentifiedImageError:
        raise RequestError(400, "the upload is not an image bastion can read (PNG or JPEG expected)") from None
    except OSError as error:
        raise RequestError(400, f"the image cannot be read: {error}") from None
    if image.format not in _FORMATS:
        raise RequestError(415, f"unsupported image format {image.format}; send PNG or JPEG")
    w, h = image.size
    if w > max_side or h > max_side:
        raise RequestError(413, f"the image is {w}x{h} pixels; the largest side accepted is {max_side}")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise RequestError(400, f"the image is truncated or corrupt: {error}") from None
    if channels not in _MODES:
        raise RequestError(422, f"the model takes {channels}-channel inputs; image uploads need 1 or 3 channels")
    image = image.convert(_MODES[channels])
    if (h, w) != (height, width):
        if not resize:
            raise RequestError(422, f"the image is {w}x{h}; the model takes {width}x{height} (resizing is off)")
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1).contiguous()
