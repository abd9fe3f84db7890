"""Tiny seeded CPU models and toy data shared by the tests."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

# No test may reach the network: huggingface_hub reads this once, at import, so set it before any test imports it.
os.environ["HF_HUB_OFFLINE"] = "1"

# Tiny models run fastest on one thread, and a second thread only fights other processes for the
# CPU: on a loaded 2-core machine two threads made these tests 10-20 times slower.
torch.set_num_threads(1)


class TinyCNN(nn.Module):
    """A small random CNN for 1x8x8 inputs and 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def seeded_tiny_cnn() -> nn.Module:
    """A factory for model specs in tests (`tests.conftest:seeded_tiny_cnn`): the same weights every time."""
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def toy_batch(tiny_cnn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """16 images in [0, 1] labelled with the model's own predictions (all correctly classified)."""
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = tiny_cnn(x).argmax(1)
    return x, y


def linear_model(w: torch.Tensor, bias: float = 0.0) -> nn.Module:
    """Two-class linear model on flattened inputs whose logit difference is w . x + bias."""
    d = w.numel()
    layer = nn.Linear(d, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.stack([torch.zeros(d), w.flatten()]))
        layer.bias.copy_(torch.tensor([0.0, bias]))
    return nn.Sequential(nn.Flatten(), layer).eval()
