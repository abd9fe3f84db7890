"""One-pixel and few-pixel attack by differential evolution (Su, Vargas & Sakurai, 2019, arXiv:1710.08864)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks._decision import default_max_batch
from bastion.attacks._evolution import PixelSearch, mutate
from bastion.attacks.base import ATTACKS, Attack
from bastion.errors import InputError
from bastion.threat import ThreatModel

__all__ = ["OnePixel"]


@ATTACKS.register("onepixel")
class OnePixel(Attack):
    """Change at most k pixels, searched by differential evolution on the model's probabilities.

    A candidate is k tuples (row, col, one value per channel). DE/rand/1 with F=0.5 and no crossover
    (as in the paper): each child is parent r1 + F (parent r2 - parent r3) with r1, r2, r3
    distinct and not the parent, and replaces its parent when its fitness is no worse. The fitness is
    the softmax probability of the true class (minimized) or of the target (maximized). Every
    candidate of every image goes through the model in the same forward pass (split only above
    `max_batch` images), and an image leaves the search as soon as one candidate fools the model.

    What it returns: on images it fooled, the fooling candidate, which changes between 1 and k
    pixels (k distinct positions; fewer only where a new value equals the old one, e.g. writing 0
    on MNIST's black background); on the others x unchanged. So `L0.measure(x_adv - x) <= k` always.

    Args:
        pixels: k, the pixels changed; None uses the threat model's budget (floor(eps) of an l0 ball),
            and a larger k is cut to it.
        population: Candidates per image (the paper: 400).
        steps: DE generations (the paper: 100); queries per image are at most population * (steps + 1).
        f: DE's differential weight F (the paper: 0.5).
        max_batch: Most candidate images per forward pass; None: 256 on a CPU, 8192 on an accelerator.

    Example:
        >>> result = OnePixel(pixels=3)(model, x, y, ThreatModel("l0", 3))
    """

    name: ClassVar[str] = "onepixel"
    query_only: ClassVar[bool] = True
    norms: ClassVar[tuple[str, ...]] = ("l0",)

    def __init__(
        self, pixels: int | None = None, population: int = 400, steps: int = 100, f: float = 0.5,
        max_batch: int | None = None,
    ) -> None:
        self.pixels, self.population, self.steps, self.f, self.max_batch = pixels, population, steps, f, max_batch

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
        """Run the evolution; see the class docstring."""
        if self.population < 4 or self.steps < 0 or (self.pixels is not None and self.pixels < 0):
            raise InputError("onepixel needs population >= 4, steps >= 0 and pixels >= 0")
        if x.dim() != 4:
            raise InputError("onepixel needs images shaped (B, C, H, W)")
        budget = math.floor(threat.eps + 1e-9)
        k = min(budget, self.pixels if self.pixels is not None else budget, math.prod(x.shape[2:]))
        x_adv = x.clone()
        if k == 0:
            return x_adv
        search = PixelSearch(model, x, y, target, threat.bounds, k, self.max_batch or default_max_batch(x.device))
        pop = search.initial(self.population, generator)
        fit, hit = search.fitness(pop, torch.arange(len(x), device=x.device))
        active = torch.arange(len(x), device=x.device)
        for step in range(self.steps + 1):
            done = hit.any(dim=1)
            if done.any():  # early stop: keep the best fooling candidate, drop the image
                best = torch.where(hit, fit, torch.full_like(fit, math.inf)).argmin(dim=1)
                rows = done.nonzero().squeeze(1)
                x_adv[active[rows]] = search.apply(pop[rows, best[rows]].unsqueeze(1), active[rows]).squeeze(1)
                keep = ~done
                active, pop, fit = active[keep], pop[keep], fit[keep]
            if step == self.steps or not len(active):
                break
            child = search.clamp(mutate(pop, self.f, generator))
            child_fit, hit = search.fitness(child, active)
            better = (child_fit <= fit) | hit  # a fooling child always survives, to be returned
            pop = torch.where(better[..., None, None], child, pop)
            fit = torch.where(better, child_fit, fit)
        return x_adv
