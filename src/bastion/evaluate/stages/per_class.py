"""Per-class robustness: a model can be robust on average and not on the class that matters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag, closed_unit
from bastion.evaluate.result import ClassRecord
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.clean import mean_of
from bastion.models import class_names

__all__ = ["PerClassResult", "PerClassSettings", "PerClassStage"]


@dataclass(frozen=True)
class PerClassSettings:
    """Attributes: floor: Robust accuracy under which a class is flagged; None gives half the overall."""

    floor: float | None = None

    def __post_init__(self) -> None:
        if self.floor is not None and not (math.isfinite(self.floor) and 0 <= self.floor <= 1):
            raise InputError(f"class_floor must lie in [0, 1], got {self.floor}")


@dataclass(frozen=True)
class PerClassResult(StageResult):
    """Clean and robust accuracy of each class, and the floor used to flag them."""

    classes: list[ClassRecord]
    floor: float


@STAGES.register("per-class")
class PerClassStage(Stage):
    """Clean and robust accuracy per class, read off the cascade's per-point worst case (no extra passes)."""

    kind = "per-class"
    Settings = PerClassSettings
    Result = PerClassResult
    settings: PerClassSettings
    flags = (Flag("class_floor", None, "flag classes with robust accuracy under this (default half the overall)",
                  float, check=closed_unit, expects="lie in [0, 1]"),)

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The floor."""
        return {"floor": options["class_floor"]}

    def run(self, ctx: EvalContext) -> PerClassResult:
        """Split the correct and robust masks by label."""
        floor = mean_of(ctx.robust) / 2 if self.settings.floor is None else self.settings.floor
        records = []
        for label, name in enumerate(_names(ctx)):
            members = ctx.data.labels == label
            n = int(members.sum())
            robust = mean_of(ctx.robust[members]) if n else 0.0
            records.append(ClassRecord(label=label, name=str(name), n=n,
                                       clean_accuracy=mean_of(ctx.correct[members]) if n else 0.0,
                                       robust_accuracy=robust, flagged=n > 0 and robust < floor))
        return PerClassResult(classes=records, floor=floor)

    @classmethod
    def headline(cls, result: PerClassResult) -> str:
        """The flagged classes."""
        flagged = [f"{c.name} ({c.robust_accuracy:.1%})" for c in result.classes if c.flagged]
        return (f"classes under the floor {result.floor:.1%}: {', '.join(flagged)}" if flagged
                else f"no class under the floor {result.floor:.1%}")


def _names(ctx: EvalContext) -> list[str]:
    """The data's class names, or the model's own (a Hugging Face config's) when the data only numbers them."""
    given = [str(c) for c in ctx.data.classes]
    carried = class_names(ctx.model)
    if carried and len(carried) >= len(given) and given == [str(i) for i in range(len(given))]:
        return carried[: len(given)]
    return given
