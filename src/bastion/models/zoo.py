"""The bundled model zoo: small pretrained models shipped with the package (`zoo:NAME`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn

from bastion.errors import InputError
from bastion.models.nets import MnistCNN

__all__ = ["ZOO", "ZooEntry", "load_zoo_model", "weights_path"]


@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: how to build it, where its weights are, and how they were made."""

    name: str
    build: Callable[[], nn.Module]
    weights: str
    description: str
    recipe: str


ZOO: dict[str, ZooEntry] = {
    "mnist-cnn": ZooEntry(
        name="mnist-cnn",
        build=MnistCNN,
        weights="mnist-cnn.pt",
        description="standard training (no defense); clean accuracy about 98% on mnist-sample:eval",
        recipe="python -m bastion.models.train_zoo mnist-cnn  (images 0-7999 of mnist-sample)",
    ),
    "mnist-cnn-at": ZooEntry(
        name="mnist-cnn-at",
        build=MnistCNN,
        weights="mnist-cnn-at.pt",
        description="PGD adversarial training (Madry et al. 2018) at Linf eps=0.3 on 8,000 images; "
        "clean 98.5%, PGD-40x5 85.3% at eps 0.3 on mnist-sample:eval (2,000 images)",
        recipe="OMP_NUM_THREADS=1 bastion train --model bastion.models.nets:MnistCNN --data mnist-sample:train "
        "--method pgd-at --eps 0.3 --steps 7 --epochs 20 --lr 3e-3 --schedule cyclic --batch-size 100 "
        "--ramp-epochs 3 --check-size 250 --out runs/mnist-cnn-at "
        "&& cp runs/mnist-cnn-at/model.pt src/bastion/models/weights/mnist-cnn-at.pt",
    ),
    "mnist-cnn-noise": ZooEntry(
        name="mnist-cnn-noise",
        build=MnistCNN,
        weights="mnist-cnn-noise.pt",
        description="Gaussian noise augmentation, sigma=0.5 (Cohen et al. 2019): the base classifier for "
        "randomized smoothing at sigma=0.5 on 8,000 images; clean accuracy 98.9% on mnist-sample:eval",
        recipe="OMP_NUM_THREADS=1 bastion train --model bastion.models.nets:MnistCNN --data mnist-sample:train "
        "--method gaussian "
        "--sigma 0.5 --epochs 12 --lr 3e-3 --schedule cyclic --batch-size 64 --out runs/mnist-cnn-noise "
        "&& cp runs/mnist-cnn-noise/model.pt src/bastion/models/weights/mnist-cnn-noise.pt",
    ),
}


def weights_path(name: str) -> str:
    """Filesystem path of a zoo entry's shipped weights."""
    return str(resources.files("bastion.models").joinpath("weights").joinpath(ZOO[name].weights))


def load_zoo_model(name: str) -> nn.Module:
    """Build zoo model `name` and load its shipped weights (tensors only: `weights_only=True`)."""
    if name not in ZOO:
        raise InputError(f"unknown zoo model {name!r}; choose one of: {', '.join(sorted(ZOO))}")
    model = ZOO[name].build()
    try:
        state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(
            f"the weights of zoo:{name} are missing from this installation; rebuild them with: {ZOO[name].recipe}"
        ) from None
    model.load_state_dict(state)
    return model.eval()
