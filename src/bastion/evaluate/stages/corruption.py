"""Common corruptions as a stage: one model's accuracy under each corruption and severity."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bastion.corruptions import CORRUPTIONS, CorruptionTable, corruption_accuracy
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.models import load_model, model_device_dtype

__all__ = ["CorruptionSettings", "CorruptionStage", "CorruptionStageResult"]


@dataclass(frozen=True)
class CorruptionSettings:
    """Attributes: corruptions (None: all), severities (0-5), and the model measured (None: the evaluated one).

    `model` and `weights` name another model, e.g. the baseline whose errors normalize the mCE.
    """

    corruptions: list[str] | None = None
    severities: list[int] | None = None
    model: str | None = None
    weights: str | None = None

    def __post_init__(self) -> None:
        unknown = [n for n in self.corruptions or [] if n not in CORRUPTIONS]
        if unknown:
            raise InputError(f"unknown corruption {unknown[0]!r}; choose one of: {', '.join(CORRUPTIONS)}")
        if self.corruptions is not None and not self.corruptions:
            raise InputError("corruptions names no corruption")
        for s in self.severities if self.severities is not None else []:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 5:
                raise InputError(f"severities must be integers in [0, 5], got {s!r}")
        if self.severities is not None and not self.severities:
            raise InputError("severities names no severity")


@dataclass(frozen=True)
class CorruptionStageResult(StageResult):
    """One model's table (`bastion.corruptions.CorruptionTable`) and which model it measured (None: the evaluated)."""

    model: str | None
    clean_accuracy: float
    accuracy: dict[str, list[float]]
    severities: list[int]
    n: int
    seed: int

    def table(self) -> CorruptionTable:
        """The table, to compare two models (`bastion.corruptions.mean_corruption_error`)."""
        return CorruptionTable(self.clean_accuracy, self.accuracy, list(self.severities), self.n, self.seed)


@STAGES.register("corruption")
class CorruptionStage(Stage):
    """Hendrycks & Dietterich's common corruptions (ICLR 2019, arXiv:1903.12261), at severities 1-5.

    Each (corruption, severity) draws from its own generator seeded by the run seed, so the table
    is the same whichever corruptions are asked for; it marks no point broken (no Lp threat model).
    """

    kind = "corruption"
    Settings = CorruptionSettings
    Result = CorruptionStageResult
    settings: CorruptionSettings

    def run(self, ctx: EvalContext) -> CorruptionStageResult:
        """Accuracy of the model under every corruption and severity."""
        s = self.settings
        model: nn.Module = ctx.model
        device, dtype = ctx.device, ctx.dtype
        if s.model is not None:
            model = load_model(s.model, weights=s.weights, device=str(ctx.device)).module
            device, dtype = model_device_dtype(model)
        severities = s.severities if s.severities is not None else [1, 2, 3, 4, 5]
        table = corruption_accuracy(model, ctx.data, corruptions=s.corruptions, severities=severities,
                                    batch_size=ctx.batch_size, seed=ctx.seed, device=device, dtype=dtype)
        return CorruptionStageResult(model=s.model, clean_accuracy=table.clean_accuracy, accuracy=table.accuracy,
                                     severities=table.severities, n=table.n, seed=table.seed)

    @classmethod
    def headline(cls, result: CorruptionStageResult) -> str:
        """Clean and mean corrupted accuracy."""
        who = f"{result.model}: " if result.model else ""
        return (f"{who}clean accuracy {result.clean_accuracy:.1%}, mean over {len(result.accuracy)} corruptions "
                f"x {len(result.severities)} severities {result.table().mean_accuracy:.1%}")
