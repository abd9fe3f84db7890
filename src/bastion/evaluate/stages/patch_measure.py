"""Measuring a trained adversarial patch as a stage: pasted at random places on held-out images."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.attacks.patch import evaluate_patch
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.patch_fit import PatchFitResult
from bastion.evaluate.stages.splits import held_out_set
from bastion.evaluate.validation import check_int

__all__ = ["PatchMeasureResult", "PatchMeasureSettings", "PatchMeasureStage"]


@dataclass(frozen=True)
class PatchMeasureSettings:
    """Attributes: placements per held-out image; split: measure on the second half of the points (else all)."""

    placements: int = 4
    split: bool = True

    def __post_init__(self) -> None:
        check_int("placements", self.placements, 1)


@dataclass(frozen=True)
class PatchMeasureResult(StageResult):
    """The patch on held-out images (`bastion.attacks.patch.PatchEvaluation`), and which images they were."""

    eval_data: str
    n_eval: int
    success_rate: float
    attacked: int
    placements: int
    clean_accuracy: float
    patched_accuracy: float


@STAGES.register("patch-measure")
class PatchMeasureStage(Stage):
    """Brown et al.'s (2017, arXiv:1712.09665) success rate: the printed patch pasted at random positions.

    Reads the patch of the `patch-fit` stage before it; success is "misclassified" (untargeted) or
    "the target" (targeted), over the held-out images classified correctly without it.
    """

    kind = "patch-measure"
    Settings = PatchMeasureSettings
    Result = PatchMeasureResult
    settings: PatchMeasureSettings

    def run(self, ctx: EvalContext) -> PatchMeasureResult:
        """Paste the patch and measure its success."""
        fit = ctx.earlier(PatchFitResult)
        if fit is None:
            raise InputError(f"stage {self.name!r} measures a patch: a patch-fit stage must run before it")
        held_out = held_out_set(ctx, self.settings.split)
        x, y = held_out.batch(slice(None), device=ctx.device, dtype=ctx.dtype)
        result = evaluate_patch(ctx.model, fit.patch(x.device, x.dtype), x, y, placements=self.settings.placements,
                                batch_size=ctx.batch_size, generator=ctx.generator("placements"))
        return PatchMeasureResult(eval_data=held_out.name, n_eval=len(held_out), success_rate=result.success_rate,
                                  attacked=result.attacked, placements=result.placements,
                                  clean_accuracy=result.clean_accuracy, patched_accuracy=result.patched_accuracy)

    @classmethod
    def headline(cls, result: PatchMeasureResult) -> str:
        """Success rate and accuracy with the patch."""
        return (f"held out: {result.n_eval} images x {result.placements} placements; clean accuracy "
                f"{result.clean_accuracy:.1%}, with the patch {result.patched_accuracy:.1%}; success rate "
                f"{result.success_rate:.1%} over {result.attacked} eligible images")
