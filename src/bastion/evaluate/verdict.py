"""The verdict section of a report, assembled from what the checks, the escalation and the curve found."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from bastion.defenses import find_defenses
from bastion.evaluate import masking
from bastion.evaluate.result import AttackRecord, Finding, Verdict
from bastion.evaluate.stages import ChecksResult, CurveResult, EscalationResult
from bastion.evaluate.stages.escalation import view_text

__all__ = ["build_verdict"]


def build_verdict(checks: ChecksResult | None, escalation: EscalationResult | None, curve: CurveResult | None,
                  robust: float, model: nn.Module) -> Verdict:
    """Every finding with what was run about it, the robust accuracy before and after escalation, the defenses.

    Args:
        checks: The checks stage's result (None when the suite had none: nothing can be said).
        escalation: The escalation stage's result.
        curve: The curve stage's result (its plateau check, and the escalation it caused).
        robust: The evaluation's robust accuracy (the worst case over every attack).
        model: The evaluated model, for its declared defenses.
    """
    findings = list(checks.findings) if checks is not None else []
    if curve is not None and curve.plateau is not None:
        findings.append(curve.plateau)
    ran = [e for e in (escalation, curve.escalation if curve else None) if e is not None and e.ran]
    flattering = checks.flattering if checks is not None else robust
    adaptive = dict(ran[0].adaptive) if ran else {}
    surrogate = next((e.surrogate for e in ran if e.surrogate), checks.surrogate if checks else None)
    if surrogate is not None:
        adaptive["surrogate"] = surrogate
    records = [r for e in ran for r in e.records if r.role.startswith("escalation")]
    return Verdict(
        verdict=masking.decide(findings, flattering, robust),
        findings=[_with_action(f, records, ran[0] if ran else None) for f in findings],
        escalated=bool(ran),
        robust_accuracy=robust,
        flattering_accuracy=flattering,
        adaptive=adaptive,
        defenses=[d.describe() for d in find_defenses(model)],
    )


def _with_action(finding: Finding, records: list[AttackRecord], escalation: EscalationResult | None) -> Finding:
    if not finding.fired or finding.action:
        return finding
    if escalation is None:
        return replace(finding, action="reported")
    names = ", ".join(dict.fromkeys(r.name for r in records)) or "adaptive attacks"
    how = view_text(escalation.adaptive)
    return replace(finding, action=f"escalated: {names}" + (f" ({how})" if how else ""))
