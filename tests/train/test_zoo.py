"""The zoo models made by `bastion train` ship their weights and their recipe."""

from __future__ import annotations

import pytest
import torch

from bastion.data import load_dataset
from bastion.models import ZOO, load_zoo_model


@pytest.mark.parametrize("name", ["mnist-cnn-at", "mnist-cnn-noise"])
def test_trained_zoo_models_are_accurate(name):
    assert "bastion train" in ZOO[name].recipe
    model = load_zoo_model(name)
    x, y = load_dataset("mnist-sample:eval").batch(slice(None))
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    assert accuracy >= 0.97


def test_noise_model_is_accurate_under_its_noise():
    model = load_zoo_model("mnist-cnn-noise")
    x, y = load_dataset("mnist-sample:eval", limit=500).batch(slice(None))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        accuracy = float((model(x + 0.5 * noise).argmax(1) == y).float().mean())
    assert accuracy >= 0.8
