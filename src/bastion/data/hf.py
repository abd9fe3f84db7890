"""Hugging Face datasets (`hf:NAME_OR_PATH[:SPLIT][:SIZE]`) as an `ImageSet`.

The image column and the label column are found by their feature types (`Image`, `ClassLabel`),
the class names come from the `ClassLabel`, and only the images kept by `--limit` are decoded,
once, to uint8. `datasets` is an optional extra (`pip install 'bastion[hf]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bastion.data.imageset import ImageSet, selection
from bastion.errors import InputError

__all__ = ["load_hf_dataset", "parse_hf_data_spec"]

_SPLIT_ORDER = ("test", "validation", "valid", "val", "eval", "train")
_LABEL_NAMES = ("label", "labels", "target", "targets", "fine_label", "class")
_CHUNK = 256


def parse_hf_data_spec(rest: str) -> tuple[str, str | None, int | None]:
    """Split what follows `hf:` into (name or folder, split or None, image size or None)."""
    if not rest:
        raise InputError("hf: needs a dataset name or a save_to_disk folder, e.g. hf:ylecun/mnist:test")
    size = None
    head, sep, tail = rest.rpartition(":")
    if sep and tail.isdigit() and not Path(rest).expanduser().exists():
        rest, size = head, int(tail)
        if size == 0:
            raise InputError("the image size of an hf: dataset must be a positive integer")
    if Path(rest).expanduser().exists():
        return rest, None, size
    head, sep, tail = rest.rpartition(":")
    if sep and head and tail:
        return head, tail, size
    return rest, None, size


def load_hf_dataset(
    rest: str, *, limit: int | None = None, seed: int | None = None, cache_dir: str | None = None
) -> ImageSet:
    """Load `hf:NAME_OR_PATH[:SPLIT][:SIZE]`, keeping `limit` images as `ImageSet.select` would.

    Args:
        rest: What follows `hf:`: a folder written by `save_to_disk` (a `Dataset`, or a
            `DatasetDict` whose split to take) or a hub dataset name (downloaded into the Hugging
            Face cache); SPLIT defaults to test, then validation, then train; SIZE resizes the
            shorter side and center-crops (needed when the images differ in size).
        limit: How many images to keep; None keeps all.
        seed: None keeps the first `limit`; an integer a seeded random subset.
        cache_dir: Another cache than the Hugging Face default (`$HF_HOME`).

    Raises:
        InputError: Without `datasets`, for an unknown split, a set without an image column, or a
            hub dataset that is neither cached nor downloadable (offline).

    """
    source, split, size = parse_hf_data_spec(rest)
    try:  # an optional extra, imported only when an hf: dataset is asked for
        import datasets
    except ImportError:
        raise InputError("hf: datasets need the datasets library: pip install 'bastion[hf]'") from None
    dataset, split = _open(datasets, source, split, cache_dir)
    name = f"hf:{source}" + (f":{split}" if split else "") + (f":{size}" if size else "")
    image_column, label_column, classes = _columns(datasets, dataset.features, name)
    chosen = selection(len(dataset), limit, seed, name)
    indices = list(range(len(dataset))) if chosen is None else chosen.tolist()
    images, labels = _decode(dataset.select_columns([image_column, label_column]), indices, image_column,
                             label_column, size, name)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W), whatever C, H and W are
    return ImageSet.from_arrays(x, labels, classes, name)


def _open(datasets: Any, source: str, split: str | None, cache_dir: str | None) -> tuple[Any, str | None]:
    """The `Dataset` of one split, from a local folder or the hub, and the split's name."""
    folder = Path(source).expanduser()
    try:
        if folder.is_dir():
            loaded = datasets.load_from_disk(str(folder))
            if isinstance(loaded, datasets.Dataset):
                if split is not None:
                    raise InputError(f"{source} holds one dataset without splits; drop :{split}")
                return loaded, None
            split = split or _default_split(list(loaded.keys()), source)
            if split not in loaded:
                raise InputError(f"unknown split {split!r} in {source}; splits: {', '.join(loaded.keys())}")
            return loaded[split], split
        if folder.exists():
            raise InputError(f"{source} is a file; hf: takes a save_to_disk folder or a hub dataset name")
        split = split or _default_split(list(datasets.get_dataset_split_names(source, cache_dir=cache_dir)), source)
        return datasets.load_dataset(source, split=split, cache_dir=cache_dir), split
    except InputError:
        raise
    except Exception as error:  # datasets raises many classes (ConnectionError, DatasetNotFoundError, ...)
        text = " ".join(str(error).split()) or type(error).__name__
        raise InputError(f"cannot load hf:{source}: {text}") from None


def _default_split(splits: list[str], source: str) -> str:
    for name in _SPLIT_ORDER:
        if name in splits:
            return name
    if len(splits) == 1:
        return splits[0]
    raise InputError(f"name a split of {source}: hf:{source}:SPLIT with one of {', '.join(splits)}")


def _columns(datasets: Any, features: Any, name: str) -> tuple[str, str, list[str] | None]:
    """(image column, label column, class names or None), found by feature type."""
    described = ", ".join(f"{k} ({type(v).__name__})" for k, v in features.items())
    image = next((k for k, v in features.items() if isinstance(v, datasets.Image)), None)
    if image is None:
        raise InputError(f"{name} has no Image column (features: {described})")
    label = next((k for k, v in features.items() if isinstance(v, datasets.ClassLabel)), None)
    if label is not None:
        return image, label, [str(n) for n in features[label].names]
    label = next((k for k in _LABEL_NAMES if k in features and isinstance(features[k], datasets.Value)
                  and str(features[k].dtype).startswith(("int", "uint"))), None)
    if label is None:
        raise InputError(f"{name} has no ClassLabel or integer label column (features: {described})")
    return image, label, None


def _decode(dataset: Any, indices: list[int], image_column: str, label_column: str, size: int | None,
            name: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode the chosen rows to uint8 (N, H, W, C), C = 1 unless some image has color."""
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for start in range(0, len(indices), _CHUNK):
        rows = dataset.select(indices[start : start + _CHUNK])
        for image, label in zip(rows[image_column], rows[label_column], strict=True):
            arrays.append(_pixels(image, size))
            labels.append(int(label))
    if not arrays:
        raise InputError(f"{name} holds no images")
    color = any(a.shape[2] == 3 for a in arrays)
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        first, second = sorted(shapes)[:2]
        raise InputError(f"images in {name} differ in size ({first} and {second}); give one size: {name}:SIZE")
    stacked = np.stack([np.repeat(a, 3, axis=2) if color and a.shape[2] == 1 else a for a in arrays])
    return stacked, np.asarray(labels, dtype=np.int64)


def _pixels(image: Any, size: int | None) -> np.ndarray:
    """One decoded image as uint8 (H, W, 1) or (H, W, 3): resized and center-cropped to `size` if given."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    gray = image.mode in ("1", "L", "I", "I;16", "F")
    image = image.convert("L" if gray else "RGB")
    if size is not None:
        width, height = image.size
        scale = size / min(width, height)
        new = (size, int(size * height / width)) if width <= height else (int(size * width / height), size)
        image = image.resize(new if scale != 1 else (width, height), Image.Resampling.BILINEAR)
        left, top = int(round((image.size[0] - size) / 2)), int(round((image.size[1] - size) / 2))
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array
