"""Differential evolution over pixel candidates for the one-pixel attack (Su, Vargas & Sakurai, 2019).

Batched across images and candidates: a population is a tensor (A, P, k, 2 + C) for A images, P
candidates of k pixels each (row, col, one value per channel).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PixelSearch", "mutate"]


class PixelSearch:
    """Candidates of shape (A, P, k, 2 + C) for A images: what they cost, and the images they make."""

    def __init__(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, bounds: tuple[float, float], k: int,
        max_batch: int,
    ) -> None:
        self.model, self.x, self.y, self.target, self.bounds, self.k = model, x, y, target, bounds, k
        self.max_batch = max(int(max_batch), 1)
        _, self.channels, self.height, self.width = x.shape
        high = torch.tensor([self.height - 1, self.width - 1] + [bounds[1]] * self.channels)
        low = torch.tensor([0.0, 0.0] + [bounds[0]] * self.channels)
        self.low, self.high = low.to(x.device, x.dtype), high.to(x.device, x.dtype)

    def initial(self, population: int, generator: torch.Generator | None) -> Tensor:
        """Positions uniform over the image, values N(mid, half-range) clipped, as the paper's N(128, 127)."""
        shape = (len(self.x), population, self.k, 2 + self.channels)
        u, z = _rand(shape, generator, self.x), _randn(shape, generator, self.x)
        mid, half = (self.bounds[0] + self.bounds[1]) / 2, (self.bounds[1] - self.bounds[0]) / 2
        values = torch.cat([u[..., :2] * self.high[:2], mid + half * z[..., 2:]], dim=-1)
        return self.clamp(values)

    def clamp(self, candidates: Tensor) -> Tensor:
        """Keep positions on the image and values in the box."""
        return torch.minimum(torch.maximum(candidates, self.low), self.high)

    def apply(self, candidates: Tensor, rows: Tensor) -> Tensor:
        """Images (A, P, C, H, W): x[rows] with each candidate's pixels written in."""
        a, p, k = candidates.shape[:3]
        pos = candidates[..., 0].round().long() * self.width + candidates[..., 1].round().long()
        values = candidates[..., 2:]
        # Two entries at one position write the first one's value, so the result does not depend on
        # which write scatter applies last (unspecified on GPUs).
        same = pos.unsqueeze(-1) == pos.unsqueeze(-2)
        first = same.to(torch.int8).argmax(dim=-1)
        values = values.gather(2, first.unsqueeze(-1).expand(-1, -1, -1, self.channels))
        images = self.x[rows].repeat_interleave(p, dim=0).reshape(a * p, self.channels, -1)
        index = pos.reshape(a * p, 1, k).expand(-1, self.channels, -1)
        images.scatter_(2, index, values.reshape(a * p, k, self.channels).transpose(1, 2))
        return images.reshape(a, p, *self.x.shape[1:])

    @torch.no_grad()
    def fitness(self, candidates: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(A, P) fitness to minimize and (A, P) success, all candidates in as few passes as `max_batch` allows."""
        a, p = candidates.shape[:2]
        per_pass = max(self.max_batch // p, 1)
        fits, hits = [], []
        for start in range(0, a, per_pass):
            part = rows[start : start + per_pass]
            images = self.apply(candidates[start : start + per_pass], part)
            logits = self.model(images.reshape(-1, *self.x.shape[1:])).reshape(len(part), p, -1)
            probs, labels = logits.softmax(dim=-1), logits.argmax(dim=-1)
            if self.target is None:
                truth = self.y[part].unsqueeze(1)
                fits.append(probs.gather(2, truth.expand(-1, p).unsqueeze(-1)).squeeze(-1))
                hits.append(labels != truth)
            else:
                goal = self.target[part].unsqueeze(1)
                fits.append(-probs.gather(2, goal.expand(-1, p).unsqueeze(-1)).squeeze(-1))
                hits.append(labels == goal)
        return torch.cat(fits), torch.cat(hits)


def mutate(pop: Tensor, f: float, generator: torch.Generator | None) -> Tensor:
    """DE/rand/1: pop[r1] + f (pop[r2] - pop[r3]), with r1, r2, r3 distinct and different from the parent."""
    a, p = pop.shape[:2]
    n = p - 1  # offsets 1..p-1 from the parent never pick the parent itself
    draws = _rand((3, a, p), generator, pop)
    o1 = (draws[0] * n).long().clamp(max=n - 1)
    o2 = (draws[1] * (n - 1)).long().clamp(max=n - 2)
    o2 = o2 + (o2 >= o1).long()
    o3 = (draws[2] * (n - 2)).long().clamp(max=n - 3)
    lo, hi = torch.minimum(o1, o2), torch.maximum(o1, o2)
    o3 = o3 + (o3 >= lo).long()
    o3 = o3 + (o3 >= hi).long()
    parent = torch.arange(p, device=pop.device)
    r1, r2, r3 = ((parent + 1 + o) % p for o in (o1, o2, o3))

    def pick(r: Tensor) -> Tensor:
        return pop.gather(1, r[..., None, None].expand(-1, -1, *pop.shape[2:]))

    return pick(r1) + f * (pick(r2) - pick(r3))


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
