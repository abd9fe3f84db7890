"""Label-only access to a model for decision-based attacks, with a per-image query budget."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DecisionOracle", "default_max_batch", "predict_labels"]


def default_max_batch(device: torch.device) -> int:
    """Points per forward pass when the caller gives none.

    CPUs run small models fastest in batches of a few hundred (on zoo:mnist-cnn, 256 beat 1,024 by
    about 1.5x); accelerators want large ones.
    """
    return 256 if device.type == "cpu" else 8192


@torch.no_grad()
def predict_labels(model: nn.Module, x: Tensor, batch_size: int = 10000) -> Tensor:
    """The model's top-1 labels for `x`: the only thing a decision-based attack may read of its output."""
    if not len(x):
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


class DecisionOracle:
    """Answers "is this point adversarial?" for the images of a batch, counting queries per image.

    Args:
        model: The classifier; only its argmax is read (`predict_labels`).
        y: (B,) true labels.
        target: (B,) target labels, or None for an untargeted attack.
        n_queries: Budget per image; `ask` refuses to spend past it.
        bounds: The input box; queried points are clipped into it.
        batch_size: Most points per forward pass.
    """

    def __init__(
        self, model: nn.Module, y: Tensor, target: Tensor | None, n_queries: int, bounds: tuple[float, float],
        batch_size: int,
    ) -> None:
        self.model, self.y, self.target, self.bounds, self.batch_size = model, y, target, bounds, max(batch_size, 1)
        self.n_queries = n_queries
        self.used = torch.zeros(len(y), dtype=torch.long, device=y.device)

    def left(self, rows: Tensor) -> Tensor:
        """Queries each of `rows` may still spend."""
        return self.n_queries - self.used[rows]

    def ask(self, points: Tensor, rows: Tensor) -> Tensor:
        """(N,) bool: each point (N, ...) is adversarial for its image `rows` (N,); costs one query each.

        Raises:
            RuntimeError: if an image would exceed its budget (a bug in the caller, never the user's).
        """
        labels = self.labels(points, rows)
        return self.adversarial(labels, rows)

    def labels(self, points: Tensor, rows: Tensor) -> Tensor:
        """(N,) top-1 labels of the points (N, ...), charged one query each to the images `rows` (N,)."""
        self.used.index_add_(0, rows, torch.ones_like(rows))
        if bool((self.used > self.n_queries).any()):
            raise RuntimeError("decision oracle: query budget exceeded")
        return predict_labels(self.model, points.clamp(*self.bounds), self.batch_size)

    def adversarial(self, labels: Tensor, rows: Tensor) -> Tensor:
        """(N,) bool: label `labels[n]` is adversarial for image `rows[n]` (no query: the label is known)."""
        return labels != self.y[rows] if self.target is None else labels == self.target[rows]
