"""The verdict section of a report, assembled from what the checks, the escalation, the audit and the curve found."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from bastion.defenses import find_defenses
from bastion.evaluate import masking
from bastion.evaluate.result import AttackRecord, Finding, Verdict
from bastion.evaluate.stages import AuditResult, ChecksResult, CurveResult, EscalationResult, MinNormResult
from bastion.evaluate.stages.escalation import view_text
from bastion.evaluate.verdicts import MEANINGLESS

__all__ = ["build_verdict"]


def build_verdict(checks: ChecksResult | None, escalation: EscalationResult | None, robust: float, model: nn.Module,
                  *, curve: CurveResult | None = None, audit: AuditResult | None = None,
                  min_norm: MinNormResult | None = None, chance: Finding | None = None) -> Verdict:
    """Every finding with what was run about it, the robust accuracy before and after escalation, the defenses.

    Args:
        checks: The checks stage's result (None when the suite had none: nothing can be said).
        escalation: The escalation stage's result.
        robust: The evaluation's robust accuracy (the worst case over every attack).
        model: The evaluated model, for its declared defenses.
        curve: The curve stage's result, held against the minimal-norm profile when there is one.
        audit: The audit stage's result: its finding, and the escalation it caused.
        min_norm: The minimal-norm stage's result: an upper bound on the accuracy at every radius.
        chance: The finding that the clean accuracy is at chance (`verdicts.chance_finding`): then the
            verdict is "meaningless", whatever the gradient-masking checks say.
    """
    findings = ([chance] if chance is not None else []) + (list(checks.findings) if checks is not None else [])
    if curve is not None and curve.points:
        bounds = min_norm.bounds() if min_norm is not None else None
        source = f"the minimal norms of {min_norm.attack}" if min_norm is not None else ""
        findings.append(masking.curve_evidence_finding(curve.points, bounds, source))
    if audit is not None and audit.finding is not None:
        findings.append(audit.finding)
    ran = escalation if escalation is not None and escalation.ran else None
    flattering = checks.flattering if checks is not None else robust
    adaptive = dict(ran.adaptive) if ran else {}
    surrogate = (ran.surrogate if ran else None) or (checks.surrogate if checks else None)
    if surrogate is not None:
        adaptive["surrogate"] = surrogate
    records = [r for r in ran.records if r.role.startswith("escalation")] if ran else []
    return Verdict(
        verdict=MEANINGLESS if chance is not None else masking.decide(findings, flattering, robust),
        findings=[_with_action(f, records, ran, audit) for f in findings],
        escalated=ran is not None or (audit is not None and audit.escalated),
        robust_accuracy=robust,
        flattering_accuracy=flattering,
        adaptive=adaptive,
        defenses=[d.describe() for d in find_defenses(model)],
    )


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
