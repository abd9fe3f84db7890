"""The gradient-masking checks: the tell-tale signs that the attacks, not the model, failed.

Athalye, Carlini & Wagner (ICML 2018, arXiv:1802.00420); Carlini et al. (2019, arXiv:1902.06705, section 5);
Pintor et al. (NeurIPS 2022, arXiv:2106.09947). Each check runs on a probe of the correctly classified points.
The black-box and transfer checks' adversarial examples count: points they broke that the cascade missed are
kept in `hits`, and the escalation stage marks them broken after its own attacks (`count_check_hits`), in a row
of their own, whether or not the check fires, so the robust accuracy never ignores a point known to be broken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bastion.attacks import PGD, Square, Transfer
from bastion.evaluate import masking
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag
from bastion.evaluate.records import AttackKind, AttackRecord, Finding
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.attack import AttackStageResult
from bastion.evaluate.stages.clean import mean_of
from bastion.evaluate.stages.probes import ProbesResult
from bastion.evaluate.surrogates import surrogate_of
from bastion.evaluate.validation import check_int, check_loss, check_rel_step
from bastion.passes import PassCount

__all__ = ["ChecksResult", "ChecksSettings", "ChecksStage", "count_check_hits"]


@dataclass(frozen=True)
class ChecksSettings:
    """Attributes: see the flags of the same names (`ChecksStage.flags`, `AttackStage.flags`, ...).

    `blackbox_points` caps the robust points of the black-box check below `probe_points` (the fast
    suite: its audit runs Square with AutoAttack's 5,000 queries on a sample of them anyway).
    """

    probe_points: int = 256
    blackbox_queries: int = 200
    blackbox_points: int | None = None
    steps: int = 20
    rel_step: float | None = None
    loss: str = "ce"
    surrogate: str | None = None
    surrogate_weights: str | None = None

    def __post_init__(self) -> None:
        for name in ("probe_points", "blackbox_queries", "steps"):
            check_int(name, getattr(self, name), 1)
        if self.blackbox_points is not None:
            check_int("blackbox_points", self.blackbox_points, 1)
        check_rel_step(self.rel_step)
        check_loss(self.loss)


@dataclass(frozen=True)
class ChecksResult(StageResult):
    """Every check's finding, the points each check's attack broke, and the standard attacks' robust accuracy."""

    findings: list[Finding]
    hits: dict[str, list[int]]
    flattering: float  # the robust accuracy before the checks: the number a tool without them would report
    surrogate: str | None = None
    surrogate_weights: str | None = None

    def verdict_findings(self) -> list[Finding]:
        """Every check's finding, fired or not (the probes' among them)."""
        return list(self.findings)


@STAGES.register("checks")
class ChecksStage(Stage):
    """Run the checks that need no escalation (the curve and the audit are judged by the verdict)."""

    kind = "checks"
    Settings = ChecksSettings
    Result = ChecksResult
    settings: ChecksSettings
    flags = (
        Flag("probe_points", 256, "most correctly classified points the gradient and large-eps checks use", int,
             minimum=1),
        Flag("blackbox_queries", 200, "query budget of the black-box check's Square attack (the escalation's: 5 "
             "times it)", int, minimum=1),
    )

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The checks' budgets, and PGD's and the surrogate's settings for the comparisons."""
        names = ("steps", "rel_step", "loss", "surrogate", "surrogate_weights", "probe_points", "blackbox_queries")
        return {name: options[name] for name in names}

    def run(self, ctx: EvalContext) -> ChecksResult:
        """Probe outputs and gradients, compare FGSM with PGD, try a huge eps, Square and transfer."""
        s, flattering = self.settings, mean_of(ctx.robust)
        attacks = ctx.all_earlier(AttackStageResult)
        probes = ctx.earlier(ProbesResult)  # probed before the attacks already: not again
        findings = list(probes.findings) if probes is not None else (
            masking.output_findings(ctx, s.probe_points) + masking.gradient_findings(ctx, s.probe_points))
        fgsm = next((r for r in attacks if r.record.name == "fgsm"), None)
        pgd = PGD(steps=s.steps, rel_step=s.rel_step, loss=s.loss)
        if fgsm is not None:
            broken = torch.zeros(len(ctx.data), dtype=torch.bool)
            broken[torch.tensor(fgsm.broken, dtype=torch.long)] = True
            findings.append(masking.fgsm_finding(ctx, broken, pgd, s.probe_points, "fgsm-vs-pgd"))
        findings.append(masking.large_eps_finding(ctx, pgd, s.probe_points, "large-eps"))
        hits: dict[str, list[int]] = {"square": []}
        blackbox_points = min(s.probe_points, s.blackbox_points or s.probe_points)
        findings.append(masking.blackbox_finding(ctx, Square(n_queries=s.blackbox_queries), blackbox_points,
                                                 "black-box", hits=hits["square"]))
        square = next((r.record for r in attacks if r.record.name == "square"), None)
        if square is not None:
            findings.append(masking.cascade_finding(square, int(ctx.correct.sum())))
        surrogate, described = surrogate_of(ctx.model, s.surrogate, ctx.device, s.surrogate_weights)
        if s.surrogate and surrogate is not None:
            transfer = Transfer(surrogate=surrogate, steps=s.steps, diversity=0.5, loss=s.loss)
            hits[transfer.name] = []
            findings.append(masking.blackbox_finding(ctx, transfer, s.probe_points, "transfer", kind="transfer",
                                                     hits=hits[transfer.name]))
        return ChecksResult(findings=findings, hits=hits, flattering=flattering, surrogate=described)

    @classmethod
    def headline(cls, result: ChecksResult) -> str:
        """The checks that fired."""
        fired = [f.check for f in result.findings if f.fired]
        broke = len({i for hits in result.hits.values() for i in hits})
        return (f"{len(fired)} of {len(result.findings)} checks fired" + (f" ({', '.join(fired)})" if fired else "")
                + (f"; their attacks broke {broke} point(s) the cascade missed" if broke else ""))


def count_check_hits(ctx: EvalContext, hits: dict[str, list[int]]) -> list[AttackRecord]:
    """Mark the points a check broke, and the cascade missed, as broken: one row per check that broke any."""
    records = []
    for name, indices in hits.items():
        broken = torch.tensor(indices, dtype=torch.long)
        broken = broken[ctx.robust[broken]] if broken.numel() else broken
        if broken.numel() == 0:
            continue
        ctx.robust[broken] = False
        records.append(AttackRecord(  # no pass of its own: the checks stage spent them
            name=name, role="masking check: points it broke that the attacks above missed",
            kind=AttackKind.MASKING_CHECK, settings={}, norm=ctx.threat.norm.name, eps=ctx.threat.eps,
            attacked=len(indices), fooled=int(broken.numel()), robust_accuracy=mean_of(ctx.robust),
            passes=asdict(PassCount()), seconds=0.0, stage=ctx.stage))
    return records

