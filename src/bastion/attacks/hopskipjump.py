"""HopSkipJump: a label-only minimal-norm attack (Chen, Jordan & Wainwright, IEEE S&P 2020, arXiv:1904.02144)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks._decision import DecisionOracle, default_max_batch
from bastion.attacks._hsj import binary_search, estimate_gradient, geometric_step, initialize
from bastion.attacks.base import ATTACKS, Attack
from bastion.errors import InputError
from bastion.threat import ThreatModel

__all__ = ["HopSkipJump"]


@ATTACKS.register("hopskipjump")
class HopSkipJump(Attack):
    """Walk along the decision boundary towards the input, reading only the model's top-1 label.

    Algorithm 2 of the paper, batched over images: start from uniform noise that is adversarial,
    binary-search to the boundary (Alg. 1; the threshold theta = gamma / d^(3/2) in L2, gamma / d^2
    in Linf); then each step estimates the gradient direction of the boundary by Monte-Carlo sign
    queries with the paper's baseline subtraction, n_t = init_evals * sqrt(t) of them (capped at
    max_evals) at radius delta_t = sqrt(d) theta dist_(t-1) in L2, d theta dist_(t-1) in Linf (0.1 of
    the box at t = 1); moves along the direction (its sign in Linf) with the geometric step-size
    search xi_t = dist / sqrt(t), halved until the point is adversarial, and binary-searches back to
    the boundary. Schedules and constants follow the authors' reference code. The model is only ever
    asked for its argmax (`bastion.attacks._decision.predict_labels`), at most `n_queries` points
    per image, and the closest adversarial point seen is returned (x itself where none was found).

    Args:
        n_queries: Query budget per image, initialization included.
        steps: Most boundary steps (iterations of Alg. 2).
        init_evals: Gradient-estimation queries at the first step (the paper's n_0 = 100).
        max_evals: Cap on gradient-estimation queries per step.
        gamma: Scales the binary-search threshold theta (the paper: 1.0).
        init_tries: Uniform-noise draws tried per image to find an adversarial start.
        max_batch: Most points per forward pass; None: 256 on a CPU, 8192 on an accelerator.

    Example:
        >>> result = HopSkipJump(n_queries=2000)(model, x, y, ThreatModel("l2", 2.0))
    """

    name: ClassVar[str] = "hopskipjump"
    query_only: ClassVar[bool] = True
    minimizes_norm: ClassVar[bool] = True

    def __init__(
        self, n_queries: int = 10000, steps: int = 64, init_evals: int = 100, max_evals: int = 10000,
        gamma: float = 1.0, init_tries: int = 100, max_batch: int | None = None,
    ) -> None:
        self.n_queries, self.steps, self.init_evals, self.max_evals = n_queries, steps, init_evals, max_evals
        self.gamma, self.init_tries, self.max_batch = gamma, init_tries, max_batch

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Run the attack; see the class docstring."""
        norm = threat.norm.name  # linf or l2: `Attack.__call__` refuses the others
        if self.n_queries < 1 or self.init_evals < 1 or self.max_evals < 1 or self.gamma <= 0:
            raise InputError("hopskipjump needs n_queries, init_evals, max_evals >= 1 and gamma > 0")
        d = math.prod(x.shape[1:])
        theta = self.gamma / (d * math.sqrt(d)) if norm == "l2" else self.gamma / d**2
        low, high = threat.bounds
        # Queries one binary search may need: log2 of the starting gap over the threshold.
        search_cost = math.ceil(math.log2(max(1.0, high - low) / theta)) + 1
        max_batch = self.max_batch or default_max_batch(x.device)
        oracle = DecisionOracle(model, y, target, self.n_queries, threat.bounds, max_batch)
        best = x.clone()
        start, found = initialize(oracle, x, self.init_tries, generator)
        rows = found.nonzero().squeeze(1)
        if not len(rows):
            return best
        xs = x[rows]
        adv = binary_search(oracle, xs, start[rows], rows, theta, norm)
        dist = threat.norm.measure(adv - xs)
        best[rows], best_dist = adv, dist.clone()
        for t in range(1, self.steps + 1):
            alive = oracle.left(rows) >= search_cost + 3
            rows, xs, adv, dist = rows[alive], xs[alive], adv[alive], dist[alive]
            if not len(rows):
                break
            best_dist = best_dist[alive]
            delta = torch.full_like(dist, 0.1 * (high - low)) if t == 1 else (
                (math.sqrt(d) if norm == "l2" else d) * theta * dist)
            wanted = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            evals = (oracle.left(rows) - search_cost - 1).clamp(max=wanted)
            direction = estimate_gradient(oracle, adv, rows, evals, delta, norm, max_batch, generator)
            update = torch.sign(direction) if norm == "linf" else direction
            step = geometric_step(oracle, adv, update, dist / math.sqrt(t), rows, search_cost)
            moved = (adv + step.reshape(-1, *[1] * (x.dim() - 1)) * update).clamp(low, high)
            adv = binary_search(oracle, xs, moved, rows, theta, norm)
            dist = threat.norm.measure(adv - xs)
            closer = dist < best_dist
            best[rows[closer]], best_dist = adv[closer], torch.minimum(dist, best_dist)
        return best
