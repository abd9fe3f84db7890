"""Spatial robustness as a stage: each point's worst rotation and translation within bounds, one method per stage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from bastion import distributed
from bastion.attacks.spatial import SpatialAttack, SpatialBounds, SpatialGrid, SpatialPGD
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.validation import check_int

__all__ = ["SPATIAL_METHODS", "SpatialSettings", "SpatialStage", "SpatialStageResult"]

#: The methods a spatial stage runs, by the name the reports use.
SPATIAL_METHODS = ("grid", "first-order")


@dataclass(frozen=True)
class SpatialSettings:
    """Attributes: method (grid or first-order); the bounds; the grid's sizes; the first-order steps and restarts."""

    method: str = "grid"
    max_angle: float = 30.0
    max_translation: float = 3.0
    angles: int = 31
    translations: int = 5
    steps: int = 50
    restarts: int = 1

    def __post_init__(self) -> None:
        if self.method not in SPATIAL_METHODS:
            raise InputError(f"spatial method must be one of {', '.join(SPATIAL_METHODS)}, got {self.method!r}")
        SpatialBounds(self.max_angle, self.max_translation)  # refuses negative or infinite bounds
        for name in ("angles", "translations", "steps", "restarts"):
            check_int(name, getattr(self, name), 1)

    def attack(self) -> SpatialAttack:
        """The attack of `method`."""
        if self.method == "grid":
            return SpatialGrid(angles=self.angles, translations=self.translations)
        return SpatialPGD(steps=self.steps, restarts=self.restarts)


@dataclass(frozen=True)
class SpatialStageResult(StageResult):
    """One method's outcome.

    Attributes:
        method: grid or first-order.
        n: Points attacked (all of them, correctly classified or not, as Engstrom et al. count).
        n_correct: Points still classified correctly under their worst transformation found.
        fooled: Indices of the points misclassified under it (the command's worst case joins them).
        seconds: The attack's own time, summed over processes.
        settings: The attack's hyperparameters.
    """

    method: str
    n: int
    n_correct: int
    fooled: list[int]
    seconds: float
    settings: dict[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", json.loads(json.dumps(self.settings, default=str)))


@STAGES.register("spatial")
class SpatialStage(Stage):
    """Engstrom et al.'s spatial attack (ICML 2019, arXiv:1712.02779): grid search or first-order steps.

    Attacks every point (misclassified ones count as fooled) and clears `ctx.robust` where it fools
    the model, so in a suite the robust points are the worst case over its methods.
    """

    kind = "spatial"
    Settings = SpatialSettings
    Result = SpatialStageResult
    settings: SpatialSettings

    def run(self, ctx: EvalContext) -> SpatialStageResult:
        """Each point's worst transformation by this stage's method."""
        s = self.settings
        attack, bounds = s.attack(), SpatialBounds(s.max_angle, s.max_translation)
        n = len(ctx.data)
        fooled = torch.zeros(n, dtype=torch.bool)
        seconds = 0.0
        shard = ctx.batches(torch.arange(n), s.method)
        for batch in shard:
            result = attack(ctx.model, batch.x, batch.y, bounds, generator=batch.generator(s.method))
            fooled[batch.indices] = result.success.cpu()
            seconds += result.seconds
        shard.merge(fooled)
        if len(ctx.robust) == n:
            ctx.robust = ctx.robust & ~fooled
        (total,) = distributed.all_reduce_sum([seconds]) if distributed.world().active else [seconds]
        return SpatialStageResult(method=s.method, n=n, n_correct=n - int(fooled.sum()),
                                  fooled=fooled.nonzero().squeeze(1).tolist(), seconds=float(total),
                                  settings=attack.settings())

    @classmethod
    def headline(cls, result: SpatialStageResult) -> str:
        """Accuracy under the method's worst transformations."""
        accuracy = result.n_correct / max(result.n, 1)
        return f"{result.method}: accuracy {accuracy:.1%} under the worst rotation and translation found"
