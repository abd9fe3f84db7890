"""How far a deployed model (ONNX, quantized, exported) is from the PyTorch surrogate attacks are crafted on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.models import load_model, prediction_agreement
from bastion.render.blocks import count, esc, note_html, pct, section_html

__all__ = ["AgreementResult", "AgreementSettings", "AgreementStage"]

#: Largest logit difference a faithful float32 export shows (about 1e-5 of the logits); beyond it, say so.
EXPORT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class AgreementSettings:
    """Attributes: surrogate: the PyTorch model spec the deployment came from; weights: its state dict."""

    surrogate: str = ""
    weights: str | None = None

    def __post_init__(self) -> None:
        if not self.surrogate:
            raise InputError("the agreement stage compares the model with a --surrogate: give one")


@dataclass(frozen=True)
class AgreementResult(StageResult):
    """The deployed model against its surrogate on the clean points (`bastion.models.Agreement`'s numbers).

    Attributes:
        surrogate: The surrogate's model spec.
        n: Points compared; agree: those both models predict alike; rate: agree / n.
        deployed_accuracy, surrogate_accuracy: Each model's clean accuracy.
        max_logit_diff: The largest absolute difference of any logit.
        disagreements: Indices of points the predictions differ on (at most 100).
    """

    surrogate: str
    n: int
    agree: int
    rate: float
    deployed_accuracy: float
    surrogate_accuracy: float
    max_logit_diff: float
    disagreements: list[int] = field(default_factory=list)


@STAGES.register("agreement")
class AgreementStage(Stage):
    """Compare the deployed model's predictions and logits with its surrogate's on the clean points.

    Transfer attacks are only as strong as the surrogate is close to the deployed model (Papernot et
    al. 2016, arXiv:1605.07277); a quantized or mis-exported deployment shows up here as disagreeing
    predictions or a logit difference far above a float32 export's.
    """

    kind = "agreement"
    Settings = AgreementSettings
    Result = AgreementResult
    settings: AgreementSettings

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The surrogate it compares with."""
        return {"surrogate": options["surrogate"] or "", "weights": options["surrogate_weights"]}

    def run(self, ctx: EvalContext) -> AgreementResult:
        """Run both models on every point."""
        surrogate = load_model(self.settings.surrogate, weights=self.settings.weights, device=str(ctx.device)).module
        agreement = prediction_agreement(ctx.model, surrogate, ctx.data, batch_size=ctx.batch_size)
        if agreement.rate < 1 or not agreement.max_logit_diff <= EXPORT_TOLERANCE:
            ctx.warnings.append(
                f"the model and its surrogate {self.settings.surrogate} disagree on {agreement.n - agreement.agree} "
                f"of {agreement.n} points (largest logit difference {agreement.max_logit_diff:.3g}): a quantized or "
                "mis-exported deployment, and transfer attacks from this surrogate are weaker for it")
        return AgreementResult.from_dict({"surrogate": self.settings.surrogate, **agreement.to_dict()})

    @classmethod
    def headline(cls, result: AgreementResult) -> str:
        """The agreement rate and the largest logit difference."""
        return (f"agrees with {result.surrogate} on {result.rate:.2%} of {result.n} points; largest logit "
                f"difference {result.max_logit_diff:.3g}")

    @classmethod
    def html_section(cls, result: AgreementResult) -> str:
        """The comparison as a short table."""
        r = result
        rows = [("points compared", count(r.n)), ("same prediction", pct(r.rate)),
                ("deployed model's clean accuracy", pct(r.deployed_accuracy)),
                ("surrogate's clean accuracy", pct(r.surrogate_accuracy)),
                ("largest logit difference", f"{r.max_logit_diff:.3g}")]
        body = "".join(f'<tr><td>{esc(k)}</td><td class="num">{esc(v)}</td></tr>' for k, v in rows)
        text = note_html(f"The deployed model against the PyTorch surrogate {esc(r.surrogate)} the transfer "
                         f"attack crafts its examples on; a float32 export differs by about 1e-5.")
        return section_html("agreement", "Deployed model and its surrogate",
                            text + f"<table><tbody>{body}</tbody></table>")
