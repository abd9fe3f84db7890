"""How far a deployed model (ONNX, quantized, exported) is from the PyTorch surrogate attacks are crafted on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, SectionResult, Stage
from bastion.models import load_model, prediction_agreement
from bastion.render.blocks import as_dict, count, esc, note_html, num, pct, section_html

__all__ = ["AgreementSettings", "AgreementStage"]

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


@STAGES.register("agreement")
class AgreementStage(Stage):
    """Compare the deployed model's predictions and logits with its surrogate's on the clean points.

    Transfer attacks are only as strong as the surrogate is close to the deployed model (Papernot et
    al. 2016, arXiv:1605.07277); a quantized or mis-exported deployment shows up here as disagreeing
    predictions or a logit difference far above a float32 export's.
    """

    kind = "agreement"
    Settings = AgreementSettings
    Result = SectionResult
    settings: AgreementSettings

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The surrogate it compares with."""
        return {"surrogate": options["surrogate"] or "", "weights": options["surrogate_weights"]}

    def run(self, ctx: EvalContext) -> SectionResult:
        """Run both models on every point."""
        surrogate = load_model(self.settings.surrogate, weights=self.settings.weights, device=str(ctx.device)).module
        agreement = prediction_agreement(ctx.model, surrogate, ctx.data, batch_size=ctx.batch_size)
        section = {"surrogate": self.settings.surrogate, **agreement.to_dict()}
        if agreement.rate < 1 or not agreement.max_logit_diff <= EXPORT_TOLERANCE:
            ctx.warnings.append(
                f"the model and its surrogate {self.settings.surrogate} disagree on {agreement.n - agreement.agree} "
                f"of {agreement.n} points (largest logit difference {agreement.max_logit_diff:.3g}): a quantized or "
                "mis-exported deployment, and transfer attacks from this surrogate are weaker for it")
        return SectionResult(section=section)

    @classmethod
    def headline(cls, result: SectionResult) -> str:
        """The agreement rate and the largest logit difference."""
        s = result.section
        return (f"agrees with {s.get('surrogate')} on {s.get('rate', 0):.2%} of {s.get('n')} points; largest logit "
                f"difference {s.get('max_logit_diff', float('nan')):.3g}")

    @classmethod
    def html_section(cls, result: SectionResult) -> str:
        """The comparison as a short table."""
        s = as_dict(result.section)
        rows = [("points compared", count(s.get("n"))), ("same prediction", pct(s.get("rate"))),
                ("deployed model's clean accuracy", pct(s.get("deployed_accuracy"))),
                ("surrogate's clean accuracy", pct(s.get("surrogate_accuracy"))),
                ("largest logit difference", f"{num(s.get('max_logit_diff')) or 0:.3g}")]
        body = "".join(f'<tr><td>{esc(k)}</td><td class="num">{esc(v)}</td></tr>' for k, v in rows)
        text = note_html(f"The deployed model against the PyTorch surrogate {esc(s.get('surrogate'))} the transfer "
                         f"attack crafts its examples on; a float32 export differs by about 1e-5.")
        return section_html("agreement", "Deployed model and its surrogate",
                            text + f"<table><tbody>{body}</tbody></table>")
