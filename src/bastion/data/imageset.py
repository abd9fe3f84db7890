"""An in-memory labelled image set: the one data type every command of bastion consumes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bastion.errors import InputError

__all__ = ["ImageSet", "selection"]


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """Images with integer labels, held in memory and handed out in batches of floats in [0, 1].

    Pixels stay unnormalized: mean/std normalization belongs to the model's first layer (as in
    Cohen et al., 2019, arXiv:1902.02918), so every threat model is measured in pixel space.

    Attributes:
        images: (N, C, H, W), either uint8 in 0-255 or floating in [0, 1].
        labels: (N,) class indices in [0, num_classes); any integer dtype is stored as int64.
        classes: Class names; the name of label `k` is `classes[k]`.
        name: The dataset spec the set came from (e.g. "mnist-sample:eval").

    Raises:
        InputError: If the shapes disagree, a label has no class, or float pixels leave [0, 1].

    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if not isinstance(x, Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"images must be a 4-D tensor (N, C, H, W) (got {got})")
        if x.dtype != torch.uint8 and not x.is_floating_point():
            raise InputError(f"images must be uint8 (0-255) or floating in [0, 1] (got {x.dtype})")
        if not isinstance(y, Tensor) or y.dim() != 1 or len(y) != len(x):
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise InputError(f"labels must be a 1-D tensor with one label per image ({len(x)}) (got {got})")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise InputError(f"labels must be integer class indices (got {y.dtype})")
        # Frozen: normalize through object.__setattr__; a new tensor, so the caller's is untouched.
        object.__setattr__(self, "labels", y.long())
        object.__setattr__(self, "classes", [str(c) for c in self.classes])
        if len(y) and int(y.min()) < 0:
            count = int((y < 0).sum())
            raise InputError(
                f"labels must be class indices >= 0, but {count} of {len(y)} are negative (min {int(y.min())}); "
                "unlabelled points (often marked -1) cannot be evaluated: drop them or give their true classes"
            )
        if len(y) and int(y.max()) >= self.num_classes:
            raise InputError(
                f"labels must lie in [0, {self.num_classes}) to match the {self.num_classes} classes "
                f"(got min {int(y.min())}, max {int(y.max())})"
            )
        if x.is_floating_point() and x.numel():
            if bool(torch.isnan(x).any()):
                raise InputError("data contains NaN values; images must be floats in [0, 1] or uint8 0-255")
            low, high = (float(v) for v in torch.aminmax(x))
            if low < 0.0 or high > 1.0:
                raise InputError(
                    f"data values must lie in [0, 1] (got min {low:.4g}, max {high:.4g}); "
                    "pass unnormalized pixels and give --mean/--std to the model instead"
                )

    @classmethod
    def from_arrays(cls, images: Any, labels: Any, classes: Any = None, name: str = "arrays") -> ImageSet:
        """Build a set from tensors or numpy arrays in any common layout, as `npz:` and `pt:` files hold them.

        Args:
            images: (N, C, H, W), (N, H, W, C) when the last dim is 1 or 3 and dim 1 is not, or
                (N, H, W) grayscale; uint8 (or another integer type) in 0-255, or floats in [0, 1].
            labels: (N,) or (N, 1) integer class indices (floats holding whole numbers are accepted).
            classes: Class names; None names them "0".."max(label)".
            name: The spec the data came from, also used in error messages.

        Returns:
            An `ImageSet` with uint8 or floating (N, C, H, W) images and int64 labels.

        """
        x = _to_nchw(_as_tensor(images, name, "images"), name)
        y = _as_tensor(labels, name, "labels")
        if y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise InputError(f"labels in {name} must be integer class indices (got fractional values)")
            y = y.long()
        if len(x) == 0:
            raise InputError(f"{name} holds no images")
        if classes is None:
            names = [str(k) for k in range(int(y.max()) + 1)]
        else:
            items = np.asarray(classes).reshape(-1).tolist() if isinstance(classes, np.ndarray) else classes
            names = [c.decode() if isinstance(c, bytes) else str(c) for c in items]
        return cls(x, y, names, name)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageSet(name={self.name!r}, n={len(self)}, shape={self.shape}, "
            f"dtype={self.images.dtype}, num_classes={self.num_classes})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of `classes`)."""
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    @cached_property
    def fingerprint(self) -> str:
        """First 16 hex digits of a SHA-256 over the shape, dtype and bytes of images and labels.

        Two sets share a fingerprint exactly when they hold the same pixels and labels in the same
        order, whatever their names: reports record it so results on different data never mix.
        """
        digest = hashlib.sha256()
        for t in (self.images, self.labels):
            digest.update(f"{tuple(t.shape)}:{t.dtype};".encode())
            # A byte view hashes any dtype (numpy has no bfloat16) without a second copy.
            digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
        return digest.hexdigest()[:16]

    def batch(
        self,
        indices: Tensor | slice,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Tensor, Tensor]:
        """Images as floats in [0, 1] and their labels.

        Args:
            indices: Integer index tensor or slice into the set.
            device: Where to put both tensors; None keeps the images' device.
            dtype: Floating dtype of the images.

        Returns:
            `x` (B, C, H, W) in [0, 1] of `dtype` on `device` (uint8 pixels divided by 255, a fresh
            tensor that shares no memory with the set) and `y` (B,) int64 on `device`.

        """
        if not dtype.is_floating_point:
            raise InputError(f"batch dtype must be floating, e.g. torch.float32 (got {dtype})")
        if isinstance(indices, Tensor):
            indices = indices.to(self.images.device)
        x, y = self.images[indices], self.labels[indices]
        if x.dtype == torch.uint8:
            # Move the compact uint8 pixels, then convert on the target device.
            x = x.to(device=device).to(dtype).div_(255)
        else:
            # Indexing with a tensor already copied; a slice is a view that must not leak out.
            x = x.to(device=device, dtype=dtype, copy=isinstance(indices, slice))
        return x, y.to(device=device, copy=True)

    def batches(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Iterate over the set in order, `batch_size` images at a time (the last batch may be smaller).

        Args:
            batch_size: Images per batch, at least 1.
            device: Where to put `x` and `y`; None keeps the images' device.
            dtype: Floating dtype of the images.

        Yields:
            `(indices, x, y)`: (B,) int64 positions in the set (on the CPU) and the output of `batch`.

        """
        if batch_size < 1:
            raise InputError(f"batch_size must be a positive integer (got {batch_size})")
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            x, y = self.batch(slice(start, stop), device=device, dtype=dtype)
            yield torch.arange(start, stop), x, y

    def subset(self, indices: Tensor | Sequence[int]) -> ImageSet:
        """Take the images at `indices` (integer positions, in the given order) as a new set.

        Args:
            indices: (K,) integer positions in [0, N); repeats are allowed.

        Returns:
            An `ImageSet` with the same classes and name and its own copy of the selected data.

        """
        idx = torch.as_tensor(indices, dtype=torch.long if not isinstance(indices, Tensor) else None)
        if idx.dim() != 1 or idx.is_floating_point() or idx.dtype == torch.bool:
            raise InputError(
                f"subset indices must be a 1-D integer sequence (got {idx.dtype}, {tuple(idx.shape)})"
            )
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            low, high = int(idx.min()), int(idx.max())
            raise InputError(f"subset indices must lie in [0, {len(self)}) (got {low}..{high})")
        idx = idx.to(self.images.device)
        return ImageSet(self.images[idx], self.labels[idx], list(self.classes), self.name)

    def select(self, limit: int | None = None, seed: int | None = None) -> ImageSet:
        """Keep the first `limit` images, or a seeded random choice of `limit` kept in dataset order.

        Args:
            limit: How many images to keep (1..N); None keeps the whole set (and ignores `seed`).
            seed: None takes the first `limit`; an integer draws a subset with `torch.Generator`,
                the same one for the same seed on every machine.

        Returns:
            The selected `ImageSet` (this one when `limit` is None).

        """
        chosen = selection(len(self), limit, seed, self.name)
        return self if chosen is None else self.subset(chosen)


def selection(n: int, limit: int | None, seed: int | None, name: str) -> Tensor | None:
    """The positions `ImageSet.select` keeps of a set of `n` images (None: all of them, in order).

    Sources that decode lazily (`hf:` datasets) call it before decoding, so they decode only
    these images and still select exactly what `select` would.
    """
    if limit is None:
        return None
    if limit < 1 or limit > n:
        raise InputError(f"limit must lie in [1, {n}], the size of {name} (got {limit})")
    if seed is None:
        return torch.arange(limit)
    generator = torch.Generator().manual_seed(seed)
    return torch.sort(torch.randperm(n, generator=generator)[:limit]).values


def _as_tensor(obj: Any, source: str, what: str) -> Tensor:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    array = np.asarray(obj)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what} in {source} must be a numeric array (got dtype {array.dtype})")
    # torch.from_numpy shares memory and warns on read-only arrays: copy those.
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _to_nchw(x: Tensor, source: str) -> Tensor:
    """Bring images to (N, C, H, W), uint8 or floating."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    elif x.dim() != 4:
        raise InputError(
            f"images in {source} must have shape (N, C, H, W), (N, H, W, C) or (N, H, W) "
            f"(got {tuple(x.shape)})"
        )
    x = x.contiguous()
    if x.dtype == torch.uint8 or x.is_floating_point():
        return x
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(f"images in {source} must be uint8 0-255 or floats in [0, 1] (got {x.dtype})")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) > 255):
        raise InputError(
            f"integer images in {source} must lie in 0-255 (got min {int(x.min())}, max {int(x.max())}); "
            "pass unnormalized pixels and give --mean/--std to the model instead"
        )
    return x.to(torch.uint8)
