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
