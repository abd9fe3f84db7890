"""The verdict section of a report, assembled from what the stages found.

Every stage result reports its findings and its rows of the attack table through the same two
methods (`StageResult.verdict_findings`, `StageResult.attack_records`), so the verdict weighs every
stage's findings alike and tells the rows apart by their kind (`AttackKind`), never by role or
attack name. What only the verdict can judge, because it spans two stages, is judged here: the
curve held against the minimal-norm profile (`masking.curve_evidence_finding`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

from torch import nn

from bastion.defenses import find_defenses
from bastion.evaluate import masking
from bastion.evaluate.records import AttackKind, AttackRecord, Finding
from bastion.evaluate.result import Verdict
from bastion.evaluate.stage import StageResult
from bastion.evaluate.stages import AuditResult, ChecksResult, CurveResult, EscalationResult, MinNormResult
from bastion.evaluate.stages.escalation import view_text
from bastion.evaluate.verdicts import MEANINGLESS

__all__ = ["build_verdict"]

R = TypeVar("R", bound=StageResult)


def build_verdict(results: Sequence[StageResult], robust: float, model: nn.Module, *,
                  chance: Finding | None = None) -> Verdict:
    """Every finding with what was run about it, the robust accuracy before and after escalation, the defenses.

    Args:
        results: Every stage's result, in run order. The findings are theirs (in run order), then the
            curve's against the minimal norms when a curve ran; the checks' `flattering` accuracy, the
            escalation's adaptive view and the audit's escalation say what was run about them.
        robust: The evaluation's robust accuracy (the worst case over every attack).
        model: The evaluated model, for its declared defenses.
        chance: The finding that the clean accuracy is at chance (`verdicts.chance_finding`): then the
            verdict is "meaningless", whatever the gradient-masking checks say.
    """
    checks, escalation = _first(results, ChecksResult), _first(results, EscalationResult)
    audit, curve, min_norm = _first(results, AuditResult), _first(results, CurveResult), _first(results, MinNormResult)
    findings = ([chance] if chance is not None else []) + [f for r in results for f in r.verdict_findings()]
    if curve is not None and curve.points:
        bounds = min_norm.bounds() if min_norm is not None else None
        source = f"the minimal norms of {min_norm.attack}" if min_norm is not None else ""
        findings.append(masking.curve_evidence_finding(curve.points, bounds, source))
    ran = escalation if escalation is not None and escalation.ran else None
    flattering = checks.flattering if checks is not None else robust
    adaptive = dict(ran.adaptive) if ran else {}
    surrogate = (ran.surrogate if ran else None) or (checks.surrogate if checks else None)
    if surrogate is not None:
        adaptive["surrogate"] = surrogate
    records = [a for r in results for a in r.attack_records() if a.kind is AttackKind.ESCALATION] if ran else []
    return Verdict(
        verdict=MEANINGLESS if chance is not None else masking.decide(findings, flattering, robust),
        findings=[_with_action(f, records, ran, audit) for f in findings],
        escalated=ran is not None or (audit is not None and audit.escalated),
        robust_accuracy=robust,
        flattering_accuracy=flattering,
        adaptive=adaptive,
        defenses=[d.describe() for d in find_defenses(model)],
    )


def _first(results: Sequence[StageResult], kind: type[R]) -> R | None:
    return next((r for r in results if isinstance(r, kind)), None)


def _with_action(finding: Finding, records: list[AttackRecord], escalation: EscalationResult | None,
                 audit: AuditResult | None) -> Finding:
    if not finding.fired or finding.action:
        return finding
    if finding.check == "audit" and audit is not None and audit.escalated:
        return replace(finding, action=f"escalated: {audit.escalation_text()}")
    if escalation is None:
        return replace(finding, action="reported")
    names = ", ".join(dict.fromkeys(r.name for r in records)) or "adaptive attacks"
    how = view_text(escalation.adaptive)
    return replace(finding, action=f"escalated: {names}" + (f" ({how})" if how else ""))
