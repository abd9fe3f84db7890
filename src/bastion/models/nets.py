"""Architectures of the bundled model zoo."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MnistCNN"]


class MnistCNN(nn.Module):
    """A small CNN for 28x28 grayscale digits: two conv-pool blocks and a two-layer head.

    The architecture of Madry et al.'s MNIST challenge model, narrowed (16/32 filters, 100 hidden
    units) to train in about a minute on a laptop CPU. Inputs (B, 1, 28, 28) in [0, 1]; logits (B, 10).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of digits."""
        out: Tensor = self.head(self.features(x))
        return out
