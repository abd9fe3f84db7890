"""Hugging Face image classifiers (`hf:NAME_OR_PATH[@REVISION]`) as models on pixels in [0, 1].

The model's image processor (resize, center crop, rescale, normalization) is folded into the
model as differentiable layers, so attacks work in pixel space [0, 1] at the size the data has
and eps keeps its meaning in grey levels; the class names of the config's `id2label` travel with
the model (`class_names`). transformers is an optional extra (`pip install 'bastion[hf]'`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.outputs import logits_of

__all__ = ["HFImageClassifier", "Resize", "load_hf_model", "parse_hf_spec"]

logger = logging.getLogger(__name__)

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's codes, as processor configs store them


class Resize(nn.Module):
    """Differentiable resize (and center crop) of (B, C, H, W) images, as an image processor does it.

    Args:
        size: Fixed output (height, width); or None with `shortest_edge`.
        shortest_edge: Resize so the shorter side has this length, keeping the aspect ratio.
        crop: (height, width) of a center crop after the resize, or None.
        mode: `F.interpolate` mode: "bilinear", "bicubic" or "nearest" (antialiased when shrinking).
    """

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        shortest_edge: int | None = None,
        crop: tuple[int, int] | None = None,
        mode: str = "bilinear",
    ) -> None:
        super().__init__()
        self.size, self.shortest_edge, self.crop, self.mode = size, shortest_edge, crop, mode

    def target(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an input of this size is resized to (before the crop)."""
        if self.size is not None:
            return self.size
        if self.shortest_edge is None:
            return height, width
        short, long = (height, width) if height <= width else (width, height)
        new_long = int(self.shortest_edge * long / short)
        return (self.shortest_edge, new_long) if height <= width else (new_long, self.shortest_edge)

    def forward(self, x: Tensor) -> Tensor:
        """Resize `x` (B, C, H, W); identity when it already has the target size."""
        height, width = int(x.shape[-2]), int(x.shape[-1])
        out_h, out_w = self.target(height, width)
        if (out_h, out_w) != (height, width):
            smooth = self.mode != "nearest"
            shrink = out_h < height or out_w < width
            x = F.interpolate(x, size=(out_h, out_w), mode=self.mode, align_corners=False if smooth else None,
                              antialias=smooth and shrink)
        if self.crop is not None:
            crop_h, crop_w = self.crop
            if crop_h > out_h or crop_w > out_w:
                raise InputError(f"the model's center crop {self.crop} exceeds the resized image {(out_h, out_w)}")
            top, left = (out_h - crop_h) // 2, (out_w - crop_w) // 2
            x = x[..., top : top + crop_h, left : left + crop_w]
        return x


class HFImageClassifier(nn.Module):
    """A transformers image classifier that takes pixels in [0, 1] and returns logits.

    forward(x) = model(normalize(scale * resize(x))).logits, all differentiable. Grayscale data
    is repeated to three channels when the model expects RGB, as the processor's RGB conversion does.

    Args:
        model: A transformers `...ForImageClassification` module.
        resize: The processor's resize and center crop.
        mean: Per-channel normalization mean (the processor's `image_mean`), or None for none.
        std: Per-channel normalization std, given together with `mean`.
        scale: Multiplies pixels in [0, 1] into what the processor feeds the normalization (1 when
            the processor rescales uint8 by 1/255, its usual setting).
        channels: Input channels the model expects.
        class_names: Name of each output, label `k` named `class_names[k]`.
    """

    def __init__(
        self,
        model: nn.Module,
        resize: Resize,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        scale: float = 1.0,
        channels: int = 3,
        class_names: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.model, self.resize, self.scale, self.channels = model, resize, scale, channels
        self.class_names = [str(name) for name in class_names]
        self.normalize = mean is not None and std is not None
        if mean is not None and std is not None:
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, K) for images `x` (B, C, H, W) in [0, 1] of any size."""
        if x.shape[0] == 0:  # transformers' attention cannot reshape an empty batch
            return x.new_zeros(0, len(self.class_names))
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != self.channels:
            raise InputError(f"the model takes {self.channels}-channel images but the data has {x.shape[1]}")
        x = self.resize(x)
        if self.scale != 1.0:
            x = x * self.scale
        if self.normalize:
            x = (x - self.get_buffer("mean").to(x.dtype)) / self.get_buffer("std").to(x.dtype)
        return logits_of(self.model(pixel_values=x))


def parse_hf_spec(rest: str) -> tuple[str, str | None]:
    """Split `NAME_OR_PATH[@REVISION]` (what follows `hf:`); an existing local path is never split."""
    if not rest:
        raise InputError("hf: needs a hub name or a local folder, e.g. hf:google/vit-base-patch16-224")
    if Path(rest).expanduser().exists() or "@" not in rest:
        return rest, None
    name, _, revision = rest.rpartition("@")
    if not name or not revision:
        raise InputError(f"cannot parse hf:{rest}; use hf:NAME or hf:NAME@REVISION (a branch, tag or commit)")
    return name, revision


def load_hf_model(rest: str, *, cache_dir: str | None = None) -> HFImageClassifier:
    """Load `hf:NAME_OR_PATH[@REVISION]`: from a local `save_pretrained` folder, or the hub through its cache.

    Args:
        rest: What follows `hf:`; a hub name (downloaded once into the Hugging Face cache,
            `$HF_HOME`) or a folder; `@REVISION` pins a branch, tag or commit of a hub repo.
        cache_dir: Another cache folder than the Hugging Face default.

    Raises:
        InputError: Without transformers, for a model that is not an image classifier, or when
            the files are neither cached nor downloadable (offline).

    """
    name, revision = parse_hf_spec(rest)
    local = Path(name).expanduser()
    source = str(local) if local.is_dir() else name
    try:  # an optional extra, imported only when an hf: model is asked for
        import transformers
    except ImportError:
        raise InputError("hf: models need transformers: pip install 'bastion[hf]'") from None
    options: dict[str, Any] = {"revision": revision, "cache_dir": cache_dir}
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(source, **options)
    except (OSError, ValueError, KeyError) as error:
        hint = " (offline? files already in the cache load with HF_HUB_OFFLINE=1)" if "connect" in str(error) else ""
        raise InputError(f"cannot load hf:{rest} as an image classifier: {_first_line(error)}{hint}") from None
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source, **options)  # type: ignore[no-untyped-call, unused-ignore]
    except (OSError, ValueError, KeyError) as error:
        logger.warning("hf:%s has no image processor (%s): no resize or normalization", rest, _first_line(error))
        processor = None
    config = model.config
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(k, id2label.get(str(k), k))) for k in range(int(config.num_labels))]
    return _wrap(model.eval(), processor, int(getattr(config, "num_channels", 3) or 3), names)


def _wrap(model: nn.Module, processor: Any, channels: int, names: list[str]) -> HFImageClassifier:
    """Fold the processor's settings into an `HFImageClassifier`."""
    if processor is None:
        return HFImageClassifier(model, Resize(), None, None, 1.0, channels, names)
    size = getattr(processor, "size", None) if getattr(processor, "do_resize", True) else None
    height, width, shortest = _field(size, "height"), _field(size, "width"), _field(size, "shortest_edge")
    crop_size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    crop = (_field(crop_size, "height"), _field(crop_size, "width"))
    crop_pct = getattr(processor, "crop_pct", None)
    if shortest is not None and crop_pct and shortest < 384:  # ConvNeXt: resize to edge / crop_pct, crop to edge
        resize = Resize(shortest_edge=int(shortest / crop_pct), crop=(shortest, shortest))
    elif height is not None and width is not None:
        resize = Resize(size=(height, width))
    else:
        resize = Resize(shortest_edge=shortest)
    if resize.crop is None and crop[0] is not None and crop[1] is not None:
        resize.crop = (int(crop[0]), int(crop[1]))
    resample = getattr(processor, "resample", 2)  # a PIL code, or torchvision's InterpolationMode
    mode = _RESAMPLE.get(int(resample), "") if isinstance(resample, int) else str(getattr(resample, "value", ""))
    resize.mode = mode if mode in ("nearest", "bilinear", "bicubic") else "bilinear"
    scale = 255.0 * float(getattr(processor, "rescale_factor", 1 / 255)) if getattr(processor, "do_rescale", True) \
        else 255.0
    normalize = getattr(processor, "do_normalize", False)
    mean = list(processor.image_mean) if normalize else None
    std = list(processor.image_std) if normalize else None
    return HFImageClassifier(model, resize, mean, std, scale, channels, names)


def _field(size: Any, key: str) -> int | None:
    """A field of a processor's size (a dict in older transformers, a SizeDict in newer ones)."""
    value = size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)
    return int(value) if value is not None else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
