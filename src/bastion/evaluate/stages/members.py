"""Each ensemble member evaluated alone, so the report can put the ensemble's robustness next to theirs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from bastion.attacks import FGSM, PGD, Attack
from bastion.defenses import Defended, Ensemble
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.attack import attack_stage
from bastion.evaluate.stages.clean import CleanStage, mean_of
from bastion.evaluate.validation import check_int, check_loss, check_rel_step
from bastion.render.blocks import esc, note_html, pct, section_html

__all__ = ["MemberRecord", "MembersResult", "MembersSettings", "MembersStage", "find_ensemble"]


def find_ensemble(model: nn.Module) -> Ensemble | None:
    """The first `Ensemble` inside `model` (itself included), or None."""
    return next((m for m in model.modules() if isinstance(m, Ensemble)), None)


@dataclass(frozen=True)
class MembersSettings:
    """The main attacks each member faces (FGSM when `fgsm`, then PGD with restarts)."""

    fgsm: bool = True
    steps: int = 20
    restarts: int = 5
    rel_step: float | None = None
    loss: str = "ce"

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)
        check_int("restarts", self.restarts, 1)
        check_rel_step(self.rel_step)
        check_loss(self.loss)


@dataclass(frozen=True)
class MemberRecord:
    """One member alone: its clean and robust accuracy under the attacks named."""

    name: str
    clean_accuracy: float
    robust_accuracy: float
    attacks: list[str]


@dataclass(frozen=True)
class MembersResult(StageResult):
    """The ensemble (combined by `mode`) and each of its members; all None / empty when the model is no ensemble."""

    mode: str | None = None
    members: list[MemberRecord] = field(default_factory=list)
    clean_accuracy: float | None = None
    robust_accuracy: float | None = None


@STAGES.register("members")
class MembersStage(Stage):
    """Clean and robust accuracy of each member of an ensemble (the ensemble itself is the cascade's model).

    An ensemble no stronger than its best member is no defense (Tramèr et al., NeurIPS 2020,
    arXiv:2002.08347, on ensembles among adaptive evaluations); the report sets them side by side.
    """

    kind = "members"
    Settings = MembersSettings
    Result = MembersResult
    settings: MembersSettings

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The attacks' settings (each member runs FGSM and PGD as the suite does)."""
        return {name: options[name] for name in ("steps", "rel_step", "loss", "fgsm", "restarts")}

    def run(self, ctx: EvalContext) -> MembersResult:
        """Evaluate each member behind the ensemble's defenses, on a copy of the context."""
        ensemble = find_ensemble(ctx.model)
        if ensemble is None:
            return MembersResult()
        s = self.settings
        attacks: list[Attack] = ([FGSM(loss=s.loss)] if s.fgsm else []) + [
            PGD(steps=s.steps, n_restarts=s.restarts, rel_step=s.rel_step, loss=s.loss)]
        members = []
        for name, member in zip(ensemble.names, ensemble.members, strict=True):
            sub = replace(ctx, model=_deployed(ctx.model, ensemble, member), warnings=[], examples=[], gallery_size=0)
            clean = CleanStage().run(sub)
            for attack in attacks:
                attack_stage(sub, attack, "ensemble member", stream=f"{name}/{attack.name}")
            members.append(MemberRecord(name, clean.top1, mean_of(sub.robust), [a.name for a in attacks]))
        return MembersResult(ensemble.mode, members, mean_of(ctx.correct), mean_of(ctx.robust))

    @classmethod
    def headline(cls, result: MembersResult) -> str:
        """Each member's robust accuracy beside the ensemble's."""
        if result.robust_accuracy is None:
            return "the model is not an ensemble"
        members = ", ".join(f"{m.name} {m.robust_accuracy:.1%}" for m in result.members)
        return f"ensemble ({result.mode}) {result.robust_accuracy:.1%} robust; members alone: {members}"

    @classmethod
    def html_section(cls, result: MembersResult) -> str:
        """The ensemble's clean and robust accuracy next to each member's."""
        return ensemble_section(result) if result.robust_accuracy is not None else ""


def _deployed(model: nn.Module, ensemble: Ensemble, member: nn.Module) -> nn.Module:
    """The member behind the same defenses as the ensemble (when the model is `Defended(defenses, ensemble)`)."""
    if isinstance(model, Defended) and model.model is ensemble:
        return Defended([*model.inputs, *model.outputs], member)
    return member


def ensemble_section(ensemble: MembersResult) -> str:
    """The ensemble's clean and robust accuracy next to each member's."""
    rows: list[tuple[str, float | None, float | None]] = [
        ("ensemble", ensemble.clean_accuracy, ensemble.robust_accuracy),
        *((m.name, m.clean_accuracy, m.robust_accuracy) for m in ensemble.members),
    ]
    body = "".join(
        f'<tr><td>{"<b>" + esc(n) + "</b>" if i == 0 else esc(n)}</td><td class="num">{pct(c)}</td>'
        f'<td class="num">{pct(r)}</td></tr>'
        for i, (n, c, r) in enumerate(rows)
    )
    table = (
        '<table><thead><tr><th>model</th><th class="num">clean accuracy</th><th class="num">robust accuracy'
        f"</th></tr></thead><tbody>{body}</tbody></table>"
    )
    intro = note_html(
        f"Combined by {esc(ensemble.mode or '?')}; the ensemble is attacked as one model, each member "
        "alone with the standard attacks (FGSM, PGD)."
    )
    return section_html("ensemble", "Ensemble and its members", intro + table)
