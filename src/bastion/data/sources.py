"""Dataset specs (`mnist-sample:eval`, `npz:PATH`, `cifar10:test`, ...) turned into an `ImageSet`."""

from __future__ import annotations

import inspect
import os
import pickle
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from bastion.data.hf import load_hf_dataset
from bastion.data.idx import parse_idx
from bastion.data.imageset import ImageSet
from bastion.data.npzfile import damaged_npz, open_npz
from bastion.errors import InputError

__all__ = ["DATASETS_HELP", "default_root", "load_dataset"]

T = TypeVar("T")

DATASETS_HELP: list[str] = [
    "mnist-sample[:train|eval|all]  bundled MNIST test split (LeCun, Cortes and Burges; CC BY-SA 3.0): "
    "train = images 0-7999, eval = 8000-9999 (the default), all = 10,000",
    "npz:PATH  numpy .npz with x|images|data, y|labels|targets and optional classes; "
    "uint8 0-255 or floats in [0, 1]; (N,C,H,W), (N,H,W,C) or (N,H,W)",
    "pt:PATH  torch.save'd dict with the same keys, or an (x, y) tuple",
    "imagefolder:PATH[:SIZE]  one sub-folder per class (torchvision); RGB, resized, center-cropped to SIZE",
    "torchvision:NAME[:SPLIT]  any torchvision.datasets class, e.g. torchvision:SVHN:test (default test)",
    "mnist|fashion-mnist|cifar10|cifar100[:train|test]  torchvision shorthands (split default test); "
    "stored under --data-root, $BASTION_DATA or ~/.cache/bastion/data",
    "hf:NAME_OR_PATH[:SPLIT][:SIZE]  Hugging Face datasets (pip install 'bastion[hf]'): a save_to_disk folder "
    "or a hub name (cached in $HF_HOME); Image and ClassLabel columns; split default test; SIZE resizes",
]
_FORMS = (
    "mnist-sample[:train|eval|all], npz:PATH, pt:PATH, imagefolder:PATH[:SIZE], torchvision:NAME[:SPLIT], "
    "mnist|fashion-mnist|cifar10|cifar100[:train|test], hf:NAME_OR_PATH[:SPLIT][:SIZE]"
)
_SHORTHANDS = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}
_MNIST_SPLITS = {"train": (0, 8000), "eval": (8000, 10000), "all": (0, 10000)}
_X_KEYS = ("x", "images", "data")
_Y_KEYS = ("y", "labels", "targets")


def default_root() -> Path:
    """Where torchvision datasets are stored: `$BASTION_DATA`, else `~/.cache/bastion/data`."""
    return Path(os.environ.get("BASTION_DATA") or "~/.cache/bastion/data").expanduser()


def load_dataset(
    spec: str,
    *,
    root: str | Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
    download: bool = True,
) -> ImageSet:
    """Load the images a dataset spec names, then keep `limit` of them (see `ImageSet.select`).

    Args:
        spec: One of the forms in `DATASETS_HELP`, e.g. "mnist-sample", "npz:data/test.npz",
            "imagefolder:photos:224", "cifar10:test". A bare path ending in .npz, .pt or .pth works too.
        root: Download folder for torchvision datasets (default `default_root()`).
        limit: How many images to keep; None keeps all.
        seed: None keeps the first `limit`; an integer picks a seeded random subset.
        download: Let torchvision download a dataset missing from `root`.

    Returns:
        An `ImageSet` whose `name` is the spec in canonical form (e.g. "mnist-sample:eval").

    Raises:
        InputError: For an unknown spec, a missing file, malformed arrays, pixels outside [0, 1],
            a torchvision spec without torchvision installed, or a bad `limit`.

    """
    prefix, _, rest = spec.partition(":")
    kind = prefix.strip().lower()
    if kind == "hf":  # selects before decoding: only the kept images are decoded
        return load_hf_dataset(rest, limit=limit, seed=seed, cache_dir=str(root) if root is not None else None)
    if kind == "mnist-sample":
        data = _mnist_sample(rest or "eval")
    elif kind in ("npz", "pt"):
        data = _array_file(kind, rest, f"{kind}:{rest}")
    elif kind == "imagefolder":
        data = _image_folder(rest, spec)
    elif kind == "torchvision" or kind in _SHORTHANDS:
        name, _, split = rest.partition(":") if kind == "torchvision" else (_SHORTHANDS[kind], "", rest)
        if kind in _SHORTHANDS and split not in ("", "train", "test"):
            raise InputError(f"unknown split {split!r} for {kind}; valid splits: train, test")
        canonical = f"{kind}:{split or 'test'}" if kind in _SHORTHANDS else None
        data = _torchvision_dataset(name, split or "test", root, download, spec, canonical)
    elif spec.lower().endswith((".npz", ".pt", ".pth")):
        ext = "npz" if spec.lower().endswith(".npz") else "pt"
        data = _array_file(ext, spec, f"{ext}:{spec}")
    else:
        raise InputError(f"unknown dataset {spec!r}; valid forms: {_FORMS}")
    return data.select(limit, seed)


def _mnist_sample(split: str) -> ImageSet:
    if split not in _MNIST_SPLITS:
        raise InputError(f"unknown mnist-sample split {split!r}; valid splits: train, eval, all")
    images, labels = _mnist_arrays()
    start, stop = _MNIST_SPLITS[split]
    x = torch.from_numpy(images[start:stop].copy()).unsqueeze(1)
    y = torch.from_numpy(labels[start:stop].astype(np.int64))
    return ImageSet(x, y, [str(k) for k in range(10)], f"mnist-sample:{split}")


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    # Decoded once per process; read-only so the cache cannot be edited through a caller's copy.
    files = resources.files("bastion.data") / "files"
    arrays = []
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        array = parse_idx((files / name).read_bytes(), name)
        array.setflags(write=False)
        arrays.append(array)
    images, labels = arrays
    if images.shape != (10000, 28, 28) or labels.shape != (10000,) or images.dtype != np.uint8:
        raise InputError("the bundled MNIST files are damaged; reinstall bastion")
    return images, labels


def _existing(path_str: str, spec: str, folder: bool = False) -> Path:
    if not path_str:
        raise InputError(f"dataset spec {spec!r} needs a path, e.g. npz:data/test.npz")
    path = Path(path_str).expanduser()
    if folder and not path.is_dir():
        raise InputError(f"data folder not found: {path_str}")
    if not folder and not path.is_file():
        raise InputError(f"data file not found: {path_str}")
    return path


def _array_file(kind: str, path_str: str, name: str) -> ImageSet:
    path = _existing(path_str, name)
    if kind == "pt":
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
            raise InputError(f"cannot read {path_str} as a torch.save file of tensors: {_line(exc)}") from exc
        return _from_arrays(obj, path_str, name)
    with open_npz(path, path_str) as archive, damaged_npz(path_str):  # members are read (and may fail) lazily
        try:
            return _from_arrays(archive, path_str, name)
        except ValueError as exc:
            if isinstance(exc, InputError):
                raise
            # numpy refuses object arrays (e.g. classes saved as Python objects) without pickle: never say how.
            raise InputError(f"{path_str} holds an array of Python objects, which bastion never unpickles (that "
                             "could run code): save numbers and strings only") from None


def _from_arrays(obj: Any, source: str, name: str) -> ImageSet:
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return ImageSet.from_arrays(obj[0], obj[1], None, name)
    if not isinstance(obj, Mapping):
        raise InputError(f"{source} must hold a dict of arrays or an (x, y) pair (got {type(obj).__name__})")
    x_key = next((k for k in _X_KEYS if k in obj), None)
    y_key = next((k for k in _Y_KEYS if k in obj), None)
    if x_key is None or y_key is None:
        keys = ", ".join(str(k) for k in obj.keys()) or "none"
        raise InputError(
            f"{source} needs an image array named x, images or data and a label array named "
            f"y, labels or targets (keys present: {keys})"
        )
    return ImageSet.from_arrays(obj[x_key], obj[y_key], obj.get("classes"), name)


def _line(exc: BaseException) -> str:
    """Put an exception's message on one line (the CLI prints errors as one line)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _torchvision(spec: str) -> tuple[Any, Any]:
    """Import torchvision's datasets and transforms lazily: torchvision is an optional dependency."""
    try:
        import torchvision.datasets as datasets
        import torchvision.transforms as transforms
    except ImportError:
        raise InputError(f"{spec} needs torchvision: pip install 'bastion[vision]'") from None
    except RuntimeError as exc:  # e.g. a torchvision built for another torch version
        message = f"{spec} needs torchvision built for torch {torch.__version__}: {_line(exc)}"
        raise InputError(message) from exc
    return datasets, transforms


def _guard(spec: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot load {spec}: {_line(exc)}") from exc


def _stack(dataset: Any, spec: str, hint: str) -> tuple[Tensor, Tensor]:
    """Decode every sample of a dataset whose transform yields uint8 (C, H, W) tensors, into one tensor."""
    return _guard(spec, lambda: _decode_all(dataset, spec, hint))


def _decode_all(dataset: Any, spec: str, hint: str) -> tuple[Tensor, Tensor]:
    n = len(dataset)
    if n == 0:
        raise InputError(f"{spec} holds no images")
    first = dataset[0][0]
    x = torch.empty((n, *first.shape), dtype=torch.uint8)
    y = torch.empty(n, dtype=torch.long)
    for i in range(n):
        image, label = dataset[i]
        if image.shape != first.shape:
            raise InputError(
                f"images in {spec} differ in size ({tuple(first.shape)} and {tuple(image.shape)}); {hint}"
            )
        x[i], y[i] = image, int(label)
    return x, y


def _image_folder(rest: str, spec: str) -> ImageSet:
    path_str, size = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and tail.isdigit():  # a trailing :SIZE; a Windows drive letter ("C:") is not all digits
        path_str, size = head, int(tail)
    if size == 0:
        raise InputError(f"image size in {spec} must be a positive integer")
    path = _existing(path_str, spec, folder=True)
    datasets, transforms = _torchvision(spec)
    # ImageFolder's default loader converts every image to RGB; PILToTensor keeps uint8 0-255.
    steps = [transforms.Resize(size), transforms.CenterCrop(size)] if size else []
    transform = transforms.Compose([*steps, transforms.PILToTensor()])
    folder = _guard(spec, lambda: datasets.ImageFolder(str(path), transform=transform))
    x, y = _stack(folder, spec, "give one size to resize to: imagefolder:PATH:SIZE")
    name = f"imagefolder:{path_str}" + (f":{size}" if size else "")
    return ImageSet(x, y, [str(c) for c in folder.classes], name)


def _torchvision_dataset(
    name: str, split: str, root: str | Path | None, download: bool, spec: str, canonical: str | None
) -> ImageSet:
    datasets, transforms = _torchvision(spec)
    lookup = {key.lower(): getattr(datasets, key) for key in dir(datasets) if not key.startswith("_")}
    cls = lookup.get(name.lower())
    if not isinstance(cls, type):
        raise InputError(f"unknown torchvision dataset {name!r}; e.g. MNIST, FashionMNIST, CIFAR10, SVHN")
    params = inspect.signature(cls).parameters
    folder = Path(root).expanduser() if root is not None else default_root()
    kwargs: dict[str, Any] = {"root": str(folder), "transform": transforms.PILToTensor()}
    if "download" in params:
        kwargs["download"] = download
    if "train" in params and split in ("train", "test"):  # MNIST, CIFAR: a train flag
        kwargs["train"] = split == "train"
    elif "split" in params:  # SVHN, STL10, EMNIST: a split name, checked by torchvision itself
        kwargs["split"] = split
    else:
        raise InputError(f"unknown split {split!r} for torchvision:{cls.__name__}; valid splits: train, test")
    dataset = _guard(spec, lambda: cls(**kwargs))
    # MNIST-like sets keep a uint8 (N,H,W) tensor in .data, CIFAR a (N,H,W,C) array, SVHN and
    # STL10 an (N,C,H,W) array with .labels: converting those whole is far faster than decoding
    # one PIL image at a time, which remains the fallback.
    data: Any = getattr(dataset, "data", None)
    targets: Any = getattr(dataset, "targets", getattr(dataset, "labels", None))
    is_uint8 = (isinstance(data, Tensor) and data.dtype == torch.uint8) or (
        isinstance(data, np.ndarray) and data.dtype == np.uint8
    )
    if not (is_uint8 and data.ndim in (3, 4) and targets is not None and len(targets) == len(data)):
        data, targets = _stack(dataset, spec, "pick a dataset whose images share one size")
    classes = getattr(dataset, "classes", None)
    n_classes = int(torch.as_tensor(targets).max()) + 1 if len(targets) else 0
    if not isinstance(classes, (list, tuple)) or len(classes) < n_classes:
        classes = None
    return ImageSet.from_arrays(data, targets, classes, canonical or f"torchvision:{cls.__name__}:{split}")
