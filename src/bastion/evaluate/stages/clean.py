"""The clean baseline: top-1 and top-5 accuracy without attack, and which points the attacks will see."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.models.checks import checked_logits
from bastion.passes import attack_mode

__all__ = ["CleanResult", "CleanStage", "mean_of"]


@dataclass(frozen=True)
class CleanResult(StageResult):
    """Accuracy without attack."""

    top1: float
    top5: float
    n_correct: int


@STAGES.register("clean")
class CleanStage(Stage):
    """Classify every point once (Carlini et al. 2019, arXiv:1902.06705, section 4: report clean accuracy first).

    Sets `ctx.predictions`, `ctx.correct` and `ctx.robust` (the correct points: misclassified points
    are never attacked), and warns about outputs that mislead gradient attacks: different outputs
    for identical inputs (a randomized model), or probabilities instead of logits.
    """

    kind = "clean"
    Result = CleanResult

    def run(self, ctx: EvalContext) -> CleanResult:
        """Top-1 and top-5 accuracy."""
        n = len(ctx.data)
        predictions = torch.empty(n, dtype=torch.long)
        top5 = torch.zeros(n, dtype=torch.bool)
        shard = ctx.batches(torch.arange(n), "clean")
        with attack_mode(ctx.model), torch.no_grad():
            for batch in shard:
                logits = checked_logits(ctx.model, batch.x, ctx.data.num_classes)
                if int(batch.indices[0]) == 0:
                    _check_outputs(ctx, batch.x, logits)
                predictions[batch.indices] = logits.argmax(1).cpu()
                k = min(5, logits.shape[1])
                top5[batch.indices] = (logits.topk(k, dim=1).indices == batch.y[:, None]).any(1).cpu()
        shard.merge(predictions, top5)
        ctx.predictions = predictions
        ctx.correct = predictions == ctx.data.labels
        ctx.robust = ctx.correct.clone()
        ctx.broken_at = torch.full((n,), float("inf"))
        return CleanResult(top1=mean_of(ctx.correct), top5=mean_of(top5), n_correct=int(ctx.correct.sum()))

    @classmethod
    def headline(cls, result: CleanResult) -> str:
        """Clean accuracy."""
        return f"clean accuracy {result.top1:.2%} (top-5 {result.top5:.2%}), {result.n_correct} points to attack"


def _check_outputs(ctx: EvalContext, x: Tensor, logits: Tensor) -> None:
    """Warn about outputs that make gradient attacks unreliable (Carlini et al. 2019, arXiv:1902.06705)."""
    again = ctx.model(x)
    if not torch.allclose(logits, again, rtol=1e-4, atol=1e-5):
        ctx.warnings.append(
            "the model gives different outputs for identical inputs (a randomized defense?): single-run "
            "gradients mislead attacks; evaluate it with EOT and repeated predictions"
        )
    rows_sum_to_one = torch.allclose(logits.sum(1), torch.ones_like(logits[:, 0]), atol=1e-3)
    if rows_sum_to_one and bool((logits >= 0).all()) and bool((logits <= 1).all()):
        ctx.warnings.append(
            "the model outputs look like probabilities, not logits: cross-entropy gradients saturate and "
            "attacks underestimate; return logits or use --loss cw"
        )


def mean_of(mask: Tensor) -> float:
    """The share of True in a boolean mask (0 when it is empty)."""
    return float(mask.float().mean()) if mask.numel() else 0.0
