"""The audit: full AutoAttack on a sample of the points a fast cascade left robust, on all of them after a miss.

A fast cascade (A3, Liu et al., CVPR 2022, arXiv:2203.08546; MALT, Melamed et al., NeurIPS 2024, arXiv:2407.02240)
saves most of AutoAttack's passes on assumptions that can fail on a model they were not tuned on. The audit tests
them where they matter: a seeded random sample of `sample` still-robust points, and the `closest` still-robust
points nearest the decision boundary (smallest clean margin), go through the standard AutoAttack (Croce & Hein,
ICML 2020, arXiv:2003.01690). A point it breaks is a miss of the cascade: it counts as broken, and the run
escalates with the AutoAttack members that broke audited points (`escalate="finders"`, the default: on a rounding
model, Square alone, instead of APGD-T and FAB-T through a straight-through view that the cascade already ran), or
with the whole AutoAttack (`escalate="all"`).

Where it escalates follows where the misses lie. The robust points split in two strata by clean margin: the
`near_share` nearest the boundary, and the rest. An honest cascade's misses sit in the near stratum (on
zoo:mnist-cnn at eps 0.1, every point AutoAttack broke and apgd-fast missed, over two seeds, was among the 20% of
robust points with the smallest clean margin). When every miss lies there, the run escalates on the near stratum
only, nearest the boundary first, `sequential` points at a time, and stops after a group in which it breaks none:
misses thin out with the margin, so a group that holds marks where they end (on a MART model, one audited miss
among the 6 nearest points would otherwise cost Square's 5,000 queries on each of 155 near points, twice what the
rest of the evaluation spends). A miss beyond the near stratum (a cascade whose assumptions failed everywhere)
escalates on every robust point at once. Points the audit already ran through AutoAttack are not attacked again.

When the m random points show no miss, the rule of three (Hanley & Lippman-Hand, JAMA 1983) bounds the share of
still-robust points the cascade misses below 3/m with 95% confidence (a zero count in m Bernoulli trials: (1 - p)^m
>= 0.05 only for p < -ln(0.05)/m, about 3/m); the report states it. After an escalation by the finders, the same
bound holds for the members that broke none of the audited random points: the share of robust points they alone
would break is below 3/m. After an escalation on the near stratum, the random points beyond it (a random sample of
the far stratum) bound the far stratum's miss rate the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from bastion.attacks import ATTACKS
from bastion.attacks.autoattack import member_specs
from bastion.attacks.versions import VERSIONS
from bastion.errors import InputError
from bastion.evaluate import masking
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag
from bastion.evaluate.records import AttackKind, AttackRecord, Finding
from bastion.evaluate.shards import sum_over_processes
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.attack import attack_stage
from bastion.evaluate.stages.audit_groups import escalate_in_groups
from bastion.evaluate.stages.checks import ChecksResult
from bastion.evaluate.stages.clean import mean_of
from bastion.evaluate.stages.probes import ProbesResult, gradient_evidence
from bastion.evaluate.stages.views import adaptive_view, query_view
from bastion.evaluate.validation import check_int
from bastion.losses import cw_margin
from bastion.passes import PassCount, attack_mode, measuring
from bastion.render.blocks import esc, note_html, section_html

__all__ = ["ESCALATE", "AuditResult", "AuditSettings", "AuditStage", "clean_margins"]

#: After a miss: escalate with the members that broke audited points, with all of them, or not at all.
ESCALATE = ("finders", "all", "none")


@dataclass(frozen=True)
class AuditSettings:
    """Attributes: how many random and boundary-nearest robust points; the AutoAttack version and budgets.

    `share` caps the audit at that share of the still-robust points (at least one of each kind), in
    the proportion of `sample` to `closest`: AutoAttack costs about 10,000 passes on a robust point,
    so auditing 40 of 400 robust points would cost as much as a tenth of AutoAttack on all of them.
    A smaller random sample gives a looser bound (3/m), which the report states. None: no cap.
    `sample` and `closest` cap it in absolute terms: 20 random points bound the miss rate below 15%,
    and 26 robust points cost the standard AutoAttack about a minute of one CPU core on the zoo's
    MNIST CNN, a third of `make demo`'s evaluation of 2,000 points.
    `near_share`: the share of robust points, nearest the boundary, that a miss among them alone
    escalates on (1: always every robust point). `chunks`: the audited points go through AutoAttack
    in that many chunks, so that up to as many torchrun processes share them (a fixed number, not
    the world size: a chunk's random draws, and so the report, never depend on how many processes
    ran it). `sequential`: after misses in the near stratum alone, the escalation attacks it in
    groups of that many points, nearest the boundary first, and stops after a group it breaks none
    of (0: the whole stratum at once).

    When the probes (or checks) found a random model or shattered gradients, AutoAttack attacks the
    adaptive view (BPDA, straight-through gradients, EOT over `eot_samples` draws), not gradients
    known to mislead.
    """

    sample: int = 20
    closest: int = 6
    share: float | None = 0.03
    near_share: float = 0.2
    version: str = "standard"
    steps: int | None = None
    n_queries: int | None = None
    escalate: str = "finders"
    eot_samples: int = 10
    chunks: int = 2
    sequential: int = 20

    def __post_init__(self) -> None:
        for name, least in (("sample", 0), ("closest", 0), ("eot_samples", 1), ("chunks", 1), ("sequential", 0)):
            check_int(name, getattr(self, name), least)
        if self.sample + self.closest < 1:
            raise InputError("an audit needs at least one point: give sample or closest >= 1")
        VERSIONS.canonical(self.version)  # an unknown version is refused, naming the registered ones
        if self.share is not None and not 0 < float(self.share) <= 1:
            raise InputError(f"share must lie in (0, 1], got {self.share}")
        if not 0 < float(self.near_share) <= 1:
            raise InputError(f"near_share must lie in (0, 1], got {self.near_share}")
        if self.escalate not in ESCALATE:
            raise InputError(f"escalate must be one of {', '.join(ESCALATE)}, got {self.escalate!r}")
        for name in ("steps", "n_queries"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)


@dataclass(frozen=True)
class AuditResult(StageResult):
    """Which points were audited, which the cascade had missed, the bound, and the escalation it caused."""

    audited: list[int]
    sampled: int
    closest: int
    missed: list[int]
    bound: float | None
    escalated: bool
    reason: str
    records: list[AttackRecord] = field(default_factory=list)
    finders: list[str] = field(default_factory=list)
    finding: Finding | None = None
    scope: str = ""
    bound_points: int = 0
    escalated_points: int = 0
    scope_points: int = 0

    def attack_records(self) -> list[AttackRecord]:
        """AutoAttack's row on the audited points, then a row per member it escalated with."""
        return list(self.records)

    def verdict_findings(self) -> list[Finding]:
        """Whether the cascade missed points it should not have (`masking.audit_finding`)."""
        return [self.finding] if self.finding is not None else []

    def escalation_text(self) -> str:
        """The members the audit escalated with, and where ("" when it did not escalate)."""
        if not self.escalated:
            return ""
        where = "the robust points nearest the boundary" if self.scope == "near" else "every robust point"
        if self.scope == "near" and 0 < self.escalated_points < self.scope_points:
            where = (f"the {self.escalated_points} robust points nearest the boundary (of {self.scope_points} "
                     "in the near stratum; it stopped after a group it broke none of)")
        return f"{', '.join(r.name for r in self.records if r.kind is AttackKind.AUDIT_ESCALATION)} on {where}"


@STAGES.register("audit")
class AuditStage(Stage):
    """Run AutoAttack on a sample of still-robust points; escalate to all of them if it breaks one."""

    kind = "audit"
    Settings = AuditSettings
    Result = AuditResult
    settings: AuditSettings
    #: AutoAttack's budgets, shared with the `autoattack` suite's members and `apgd-fast` (`bastion.evaluate.suites`).
    flags = (
        Flag("aa_version", "standard", "AutoAttack version of the autoattack and extended suites",
             choices=VERSIONS.names),
        Flag("aa_steps", None, "iterations of AutoAttack's gradient attacks and of apgd-fast (default 100)", int,
             minimum=1),
        Flag("aa_queries", None, "Square's query budget in AutoAttack (default 5000)", int, minimum=1),
    )

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """AutoAttack's budgets."""
        return {"steps": options["aa_steps"], "n_queries": options["aa_queries"]}

    def run(self, ctx: EvalContext) -> AuditResult:
        """Audit, and escalate after a miss.

        The AutoAttack row's cost is the stage's, less its escalation's rows: the clean margins and
        the adaptive view's probe pass are the audit's own work, so the rows add up to the stage.
        """
        with measuring(ctx.model) as cost:
            result = self._audit(ctx)
        if not result.records:
            return result
        escalation = sum((PassCount(**r.passes) for r in result.records[1:]), PassCount())
        audit = replace(result.records[0], passes=asdict(sum_over_processes(cost.passes) - escalation),
                        seconds=max(0.0, cost.seconds - sum(r.seconds for r in result.records[1:])))
        return replace(result, records=[audit, *result.records[1:]])

    def _audit(self, ctx: EvalContext) -> AuditResult:
        s = self.settings
        robust = ctx.robust.nonzero().squeeze(1)
        if robust.numel() == 0:
            return AuditResult(audited=[], sampled=0, closest=0, missed=[], bound=None, escalated=False,
                               reason="no point left robust: nothing to audit",
                               finding=masking.audit_finding(0, 0, 0, 0, []))
        margins = clean_margins(ctx, robust)
        n_random, n_closest = self._sizes(len(robust))
        by_margin = robust[torch.argsort(margins[robust], stable=True)]
        nearest = by_margin[:n_closest]
        near = by_margin[:max(n_closest, math.ceil(s.near_share * len(robust)))]
        rest = robust[~torch.isin(robust, nearest)]
        sample = rest[torch.randperm(len(rest), generator=ctx.generator("sample"))[:n_random]]
        audited = torch.sort(torch.cat([nearest, sample])).values
        attacks = [(name, ATTACKS.create(name, **params))
                   for name, params in member_specs(s.version, steps=s.steps, n_queries=s.n_queries)]
        random, mislead = gradient_evidence([f for r in (ctx.earlier(ProbesResult), ctx.earlier(ChecksResult))
                                             if r is not None for f in r.findings])
        view = adaptive_view(ctx, s.eot_samples, random).module if mislead else None
        seen = {name: None if view is None else query_view(attack, view, ctx.model, random) for name, attack in attacks}
        chunk = min(ctx.batch_size, math.ceil(len(audited) / s.chunks))
        sub = replace(ctx, robust=torch.zeros_like(ctx.robust), examples=[], warnings=[], gallery_size=0,
                      batch_size=chunk)
        sub.robust[audited] = True
        finders = []
        for name, attack in attacks:
            if attack_stage(sub, attack, "audit", model=seen[name], stream=f"audit/{name}").fooled:
                finders.append(name)
        missed = audited[~sub.robust[audited]]
        ctx.robust[missed] = False
        missed_in_sample = int(torch.isin(missed, sample).sum())
        far_sample = sample[~torch.isin(sample, near)]
        scope = "" if not missed.numel() else "near" if torch.isin(missed, near).all() else "all"
        bound_points = len(sample) if not missed_in_sample else len(far_sample) if scope == "near" else 0
        bound = 3 / bound_points if bound_points > 3 else None  # 3/m >= 1 bounds nothing
        records = [AttackRecord(
            name=f"autoattack-{s.version}", role=f"audit: {len(sample)} random and {len(nearest)} boundary-nearest "
            "robust points", kind=AttackKind.AUDIT, settings={"version": s.version, "steps": s.steps,
                                                              "n_queries": s.n_queries},
            norm=ctx.threat.norm.name, eps=ctx.threat.eps, attacked=len(audited), fooled=len(missed),
            robust_accuracy=mean_of(ctx.robust), passes=asdict(PassCount()), seconds=0.0,
            stage=ctx.stage)]  # its cost: `run`
        targets = ctx.robust.clone()
        targets[audited] = False  # AutoAttack already ran on them
        if scope == "near":
            targets[robust[~torch.isin(robust, near)]] = False
        escalated = bool(missed.numel()) and s.escalate != "none" and bool(targets.any())
        order = by_margin[targets[by_margin]] if escalated else by_margin[:0]  # nearest the boundary first
        attacked = 0
        if escalated:
            members = [(name, attack) for name, attack in attacks if s.escalate == "all" or name in finders]
            group = s.sequential if scope == "near" and s.sequential else len(order)
            escalation, attacked = escalate_in_groups(ctx, members, seen, order, group)
            records += escalation
        reason = (f"AutoAttack broke {len(missed)} of {len(audited)} audited points the cascade had left robust "
                  f"(with {', '.join(finders)})" if missed.numel()
                  else f"AutoAttack broke none of the {len(audited)} audited points")
        if scope == "near":
            reason += f", all among the {len(near)} robust points nearest the boundary"
        finding = masking.audit_finding(len(sample), missed_in_sample, len(nearest),
                                        len(missed) - missed_in_sample, finders)
        return AuditResult(audited=audited.tolist(), sampled=len(sample), closest=len(nearest),
                           missed=missed.tolist(), bound=bound, escalated=escalated, reason=reason, records=records,
                           finders=finders, finding=finding, scope=scope, bound_points=bound_points,
                           escalated_points=attacked, scope_points=len(order))

    def _sizes(self, robust: int) -> tuple[int, int]:
        """How many random and boundary-nearest points to audit among `robust` still-robust points."""
        s = self.settings
        total = s.sample + s.closest
        if s.share is None:
            return s.sample, s.closest
        allowed = min(total, max(round(s.share * robust), int(s.sample > 0) + int(s.closest > 0)))
        closest = min(s.closest, max(int(s.closest > 0), round(allowed * s.closest / total)))
        return allowed - closest, closest

    @classmethod
    def headline(cls, result: AuditResult) -> str:
        """What the audit found, the bound it gives, and whether it escalated."""
        if not result.audited:
            return result.reason
        text = result.reason
        if result.bound is None and 0 < result.bound_points <= 3:
            text += f"; {result.bound_points} random point(s) are too few to bound the miss rate"
        if result.bound is not None:
            beyond = " beyond them" if result.scope == "near" else ""
            m = result.bound_points or result.sampled  # reports written before bound_points bound the whole sample
            text += f"; miss rate{beyond} < {result.bound:.1%} (95%, rule of three on {m} random points)"
        if result.escalated:
            last = result.records[-1].robust_accuracy
            text += f"; escalated with {result.escalation_text()}: robust accuracy {last:.2%}"
        return text

    @classmethod
    def html_section(cls, result: AuditResult) -> str:
        """The audit in a paragraph."""
        if not result.audited:
            return ""
        text = (f"The standard AutoAttack ran on {result.sampled} randomly sampled and {result.closest} "
                f"boundary-nearest points the fast cascade had left robust. {esc(cls.headline(result))}.")
        if result.bound is not None:
            text += (" With no miss among the random sample, the rule of three bounds the share of robust points "
                     "the cascade misses below 3/m at 95% confidence.")
        return section_html("audit", "Audit of the fast cascade", note_html(text))


def clean_margins(ctx: EvalContext, indices: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j on the clean points `indices` (a tensor over all points; others are +inf)."""
    margins = torch.full((len(ctx.data),), float("inf"))
    shard = ctx.batches(indices, "audit: margins")
    with attack_mode(ctx.model), torch.no_grad():
        for batch in shard:
            margins[batch.indices] = -cw_margin(ctx.model(batch.x).float(), batch.y).cpu()
    shard.merge(margins)
    return margins
