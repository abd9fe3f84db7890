"""What the served model was trained on, when known: the default calibration set and the overlap check.

A conformal guarantee needs calibration images drawn like the traffic, and the model's training
images are not: the model is more confident on them than on anything it will serve, so their
detector scores are lower and the flag rate promised on them is broken on real inputs. The zoo
models were trained on `mnist-sample:train` (images 0-7999 of the bundled MNIST sample; see the
recipes in `bastion.models.zoo`), which leaves `mnist-sample:eval` (images 8000-9999) held out.
For them the calibration set defaults to a seeded half of the held-out split, and a calibration set
sharing any image with the training split is refused. Other models need `--calibration`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models.zoo import ZOO

__all__ = ["Provenance", "image_keys", "known_provenance", "refuse_training_overlap", "resolve_calibration"]


@dataclass(frozen=True)
class Provenance:
    """A model's training split and held-out split (data specs), and the default calibration size."""

    training: str
    held_out: str
    calibration_limit: int


_MNIST_SAMPLE = Provenance("mnist-sample:train", "mnist-sample:eval", 1000)


def known_provenance(model_spec: str) -> Provenance | None:
    """The provenance of a zoo model (all trained on mnist-sample:train), None for any other model."""
    spec = model_spec.strip()
    if spec.startswith("zoo:") and spec[4:] in ZOO:
        return _MNIST_SAMPLE
    return None


def resolve_calibration(model_spec: str, calibration: str | None, limit: int | None) -> tuple[str, int | None]:
    """The calibration spec and limit to load: the given ones, else a known model's held-out split.

    Raises:
        InputError: without `calibration` for a model whose held-out data is unknown.
    """
    if calibration is not None:
        return calibration, limit
    known = known_provenance(model_spec)
    if known is None:
        raise InputError(f"--calibration is required for {model_spec}: name held-out images drawn like the traffic "
                         "(never the model's training data), e.g. --calibration npz:heldout.npz")
    return known.held_out, limit or known.calibration_limit


def image_keys(x: Tensor) -> list[bytes]:
    """A digest per image (N, C, H, W) in [0, 1], of its pixels rounded to 8 bits: equal images, equal keys."""
    pixels = (x.detach().float().cpu() * 255.0).round().clamp(0, 255).to(torch.uint8).flatten(1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in pixels]


@lru_cache(maxsize=4)
def _training_keys(spec: str) -> frozenset[bytes]:
    images = load_dataset(spec).images
    return frozenset(image_keys(images.float() / 255.0 if images.dtype == torch.uint8 else images.float()))


def refuse_training_overlap(model_spec: str, x: Tensor) -> None:
    """Refuse calibration images (N, C, H, W) of which any is an image of the model's known training split.

    Raises:
        InputError: naming how many images are shared and the held-out split to use instead.
    """
    known = known_provenance(model_spec)
    if known is None:
        return
    training = _training_keys(known.training)
    shared = sum(key in training for key in image_keys(x))
    if shared:
        raise InputError(f"the calibration set shares {shared} of its {len(x)} images with the training split of "
                         f"{model_spec} ({known.training}); the model is more confident on them than on new inputs, "
                         f"so the flag rate would not hold: calibrate on held-out images, e.g. --calibration "
                         f"{known.held_out}")
