"""Scoring a learned universal perturbation as a stage: its fooling rate on images it was not learned on."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.attacks.universal import evaluate_universal
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.splits import held_out_set
from bastion.evaluate.stages.universal_fit import UniversalFitResult

__all__ = ["UniversalScoreResult", "UniversalScoreSettings", "UniversalScoreStage"]


@dataclass(frozen=True)
class UniversalScoreSettings:
    """Attributes: split: score on the second half of the points (the first half trained); else on all of them."""

    split: bool = False


@dataclass(frozen=True)
class UniversalScoreResult(StageResult):
    """`bastion.attacks.universal.UniversalScore` on the held-out images, the perturbation's norm, the images' name."""

    eval_data: str
    n: int
    fooling_rate: float
    clean_accuracy: float
    perturbed_accuracy: float
    norm_of_delta: float


@STAGES.register("universal-score")
class UniversalScoreStage(Stage):
    """The held-out fooling rate P(k(x + v) != k(x)) of Moosavi-Dezfooli et al. (CVPR 2017, arXiv:1610.08401).

    Reads the perturbation of the `universal-fit` stage before it.
    """

    kind = "universal-score"
    Settings = UniversalScoreSettings
    Result = UniversalScoreResult
    settings: UniversalScoreSettings

    def run(self, ctx: EvalContext) -> UniversalScoreResult:
        """Add the perturbation to every held-out image."""
        fit = ctx.earlier(UniversalFitResult)
        if fit is None:
            raise InputError(f"stage {self.name!r} scores a perturbation: a universal-fit stage must run before it")
        held_out = held_out_set(ctx, self.settings.split)
        x, y = held_out.batch(slice(0, len(held_out)), device=ctx.device, dtype=ctx.dtype)
        delta = fit.universal(ctx.threat, x.device, x.dtype).delta
        score = evaluate_universal(ctx.model, delta, x, y, bounds=ctx.threat.bounds)
        return UniversalScoreResult(eval_data=held_out.name, n=score.n, fooling_rate=score.fooling_rate,
                                    clean_accuracy=score.clean_accuracy, perturbed_accuracy=score.perturbed_accuracy,
                                    norm_of_delta=float(ctx.threat.norm.measure(delta.unsqueeze(0))[0]))

    @classmethod
    def headline(cls, result: UniversalScoreResult) -> str:
        """Held-out fooling rate."""
        return (f"held out ({result.eval_data}): fools {result.fooling_rate:.1%} of {result.n} images, accuracy "
                f"{result.clean_accuracy:.1%} -> {result.perturbed_accuracy:.1%}")
