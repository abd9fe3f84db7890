"""Rebuild the zoo's weights: `python -m bastion.models.train_zoo mnist-cnn [--out PATH]`.

Trains on images 0-7999 of the bundled MNIST split (the project's convention: 8000-9999 are for
evaluation), seeded, on the CPU, so the command reproduces the shipped weights.
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.data import load_dataset
from bastion.models.zoo import ZOO, weights_path

logger = logging.getLogger(__name__)


def _shift(x: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    """Random translation by up to `max_shift` pixels (zero padding): cheap augmentation for digits."""
    padded = F.pad(x, [max_shift] * 4)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def train_mnist_cnn(epochs: int = 12, batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> dict[str, Tensor]:
    """Train `MnistCNN` with Adam and a cosine schedule; returns its state dict."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train = load_dataset("mnist-sample:train")
    evaluation = load_dataset("mnist-sample:eval")
    model = ZOO["mnist-cnn"].build()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr * 3, total_steps=steps)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            x, y = train.batch(order[start : start + batch_size])
            loss = F.cross_entropy(model(_shift(x, generator)), y)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            x, y = evaluation.batch(slice(None))
            accuracy = float((model(x).argmax(1) == y).float().mean())
        logger.warning("epoch %d/%d: eval accuracy %.4f", epoch + 1, epochs, accuracy)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(ZOO))
    parser.add_argument("--out", help="where to write the weights (default: the package's zoo folder)")
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s")
    state = train_mnist_cnn()
    out = args.out or weights_path(args.name)
    torch.save(state, out)
    logger.warning("wrote %s", out)


if __name__ == "__main__":
    main()
