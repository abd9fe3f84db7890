"""Small CNNs trained in seconds on the bundled MNIST sample, for the ensemble and distillation tests."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from bastion.data import load_dataset
from bastion.train import TRAINERS, FitConfig, fit


def small_cnn(seed: int) -> nn.Module:
    """Two strided convolutions and a linear head for 1x28x28 digits, initialized from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 8, 5, stride=2, padding=2), nn.ReLU(),
                             nn.Conv2d(8, 16, 5, stride=2, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(784, 10))


def _fit(model: nn.Module, trainer_name: str, seed: int, **options: object) -> nn.Module:
    train = load_dataset("mnist-sample:train", limit=2000)
    config = FitConfig(epochs=3, batch_size=64, lr=1e-2, schedule="constant", augment="none", check_size=0, seed=seed)
    fit(model, TRAINERS.create(trainer_name, **options), train, config=config)
    return model.eval()


@lru_cache(maxsize=4)
def trained_cnn(seed: int) -> nn.Module:
    """A standard-trained `small_cnn(seed)` (about 90% clean accuracy)."""
    return _fit(small_cnn(seed), "standard", seed)


@lru_cache(maxsize=2)
def distilled_cnn(temperature: float) -> nn.Module:
    """Defensive distillation (Papernot et al. 2016): a teacher trained at T, a student distilled at T, used at T=1."""
    teacher = _fit(small_cnn(10), "standard", 10, temperature=temperature)
    return _fit(small_cnn(11), "distill", 11, teacher=teacher, temperature=temperature)
