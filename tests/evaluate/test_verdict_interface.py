"""The verdict reads every stage through one interface: its findings, and its attack records by kind, not by role."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from bastion.evaluate.records import AttackKind, AttackRecord, Finding
from bastion.evaluate.stage import StageResult
from bastion.evaluate.stages import ChecksResult, EscalationResult
from bastion.evaluate.verdict import build_verdict

MODEL = nn.Linear(2, 2)


@dataclass(frozen=True)
class _NewStageResult(StageResult):
    """A stage the verdict has never heard of, with a finding of its own."""

    finding: Finding

    def verdict_findings(self) -> list[Finding]:
        return [self.finding]


def _finding(check: str, fired: bool = True, severity: str = "suspicious") -> Finding:
    return Finding(check, f"the sign {check}", fired, severity, "measured")


def _row(name: str, kind: AttackKind, robust: float = 0.5) -> AttackRecord:
    """A row whose role says nothing: the verdict must not need it."""
    return AttackRecord(name=name, role="words for a reader", kind=kind, settings={}, norm="linf", eps=0.1,
                        attacked=4, fooled=1, robust_accuracy=robust, passes={}, seconds=0.0)


def test_any_stage_s_findings_reach_the_verdict_in_run_order():
    first, second = _finding("new-check"), _finding("other-check", fired=False)
    verdict = build_verdict([_NewStageResult(first), _NewStageResult(second)], 0.5, MODEL)
    assert verdict.verdict == "suspicious" and [f.check for f in verdict.findings] == ["new-check", "other-check"]
    assert verdict.fired == [replace(first, action="reported")]  # nothing escalated about it
    broken = build_verdict([_NewStageResult(_finding("new-check", severity="broken"))], 0.5, MODEL)
    assert broken.verdict == "broken"
    assert build_verdict([_NewStageResult(_finding("new-check", fired=False))], 0.5, MODEL).verdict == "reliable"


def test_the_escalation_s_action_names_its_escalation_rows_by_kind():
    checks = ChecksResult(findings=[_finding("zero-gradients")], hits={}, flattering=0.6)
    rows = [_row("pgd", AttackKind.ESCALATION), _row("transfer", AttackKind.MASKING_CHECK),
            _row("overhead", AttackKind.OVERHEAD), _row("square", AttackKind.ESCALATION, robust=0.55),
            _row("pgd", AttackKind.ESCALATION)]
    escalation = EscalationResult(ran=True, reason="checks fired: zero-gradients", records=rows)
    verdict = build_verdict([checks, escalation], 0.5, MODEL)
    assert [f.action for f in verdict.fired] == ["escalated: pgd, square"]
    assert verdict.escalated and verdict.flattering_accuracy == 0.6 and verdict.verdict == "broken"  # 0.6 -> 0.5
    quiet = EscalationResult(ran=False, reason="no check fired", records=[_row("square", AttackKind.MASKING_CHECK)])
    assert [f.action for f in build_verdict([checks, quiet], 0.5, MODEL).fired] == ["reported"]
