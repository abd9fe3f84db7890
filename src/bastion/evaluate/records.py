"""What the stages hand the report and the verdict: attack records, typed by kind, and findings.

Every stage result offers them through one interface (`StageResult.attack_records`,
`StageResult.verdict_findings`): the attack table is every stage's attack records in run order,
and the verdict weighs every stage's findings. A record's `kind` says what the row is (a standard
attack of the suite, an escalation, a masking check's count, an audit, a stage's overhead), so no
reader tells rows apart by their `role`, which is the text a person reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from bastion.errors import InputError

__all__ = ["AttackKind", "AttackRecord", "Finding", "parse_kind"]


class AttackKind(str, Enum):
    """What a row of the attack table is; stored in report.json as its value.

    The first six are the suite's standard attacks (`standard`), whose robust accuracy is the
    number a tool without gradient-masking checks would report (Carlini et al. 2019,
    arXiv:1902.06705); the rest are what bastion ran or counted because of its checks.
    """

    ATTACK = "attack"  #: an attack stage the suite gave no other kind
    SANITY = "sanity"  #: the FGSM sanity check
    MAIN = "main"  #: the suite's main attack (PGD, apgd-fast, Square on a deployed model)
    AUTOATTACK = "autoattack"  #: a member of AutoAttack (Croce & Hein 2020, arXiv:2003.01690)
    TRANSFER = "transfer"  #: a transfer attack from a surrogate model
    QUERY = "query"  #: a query-only attack on a deployed model (label-only HopSkipJump)
    ESCALATION = "escalation"  #: an adaptive attack run because a masking check fired (Athalye et al. 2018)
    MASKING_CHECK = "masking-check"  #: the points a masking check's attack broke that the cascade missed
    AUDIT = "audit"  #: the standard AutoAttack on a sample of the points a fast cascade left robust
    AUDIT_ESCALATION = "audit-escalation"  #: an AutoAttack member run after the audit found a miss
    OVERHEAD = "overhead"  #: a stage's work outside its attacks (no attack: it breaks no point)

    @property
    def standard(self) -> bool:
        """Whether the row is one of the suite's standard attacks (before any check, escalation or audit)."""
        return self in _STANDARD


_STANDARD = frozenset({AttackKind.ATTACK, AttackKind.SANITY, AttackKind.MAIN, AttackKind.AUTOATTACK,
                       AttackKind.TRANSFER, AttackKind.QUERY})


def parse_kind(value: Any) -> AttackKind:
    """An `AttackKind` from itself or its value.

    Raises:
        InputError: If `value` names no kind (the message lists them).
    """
    try:
        return AttackKind(value)
    except ValueError:
        raise InputError(f"unknown attack kind {value!r}; choose one of: "
                         f"{', '.join(k.value for k in AttackKind)}") from None


@dataclass(frozen=True)
class AttackRecord:
    """One row of the attack table: its attack's settings, whom it attacked, and the robust accuracy after it.

    `kind` says what the row is (`AttackKind`); `role` is why it ran, in words, for the reader.
    `robust_accuracy` is the per-sample worst case over this attack and every one before it;
    `standalone_accuracy` counts only this attack's own successes (and clean errors), when known.
    `passes` and `seconds` are everything the row's work cost, counted by the same count of the
    classifier as its stage's (`StageRecord`): the rows of a stage add up to the stage's cost, its
    work outside its attacks shown as a row of its own (kind `OVERHEAD`). `stage`: the name of
    the stage that ran it (empty in reports written before it was recorded).
    """

    name: str
    role: str
    kind: AttackKind
    settings: dict[str, Any]
    norm: str
    eps: float
    attacked: int
    fooled: int
    robust_accuracy: float
    passes: dict[str, int]
    seconds: float
    standalone_accuracy: float | None = None
    stage: str = ""


@dataclass(frozen=True)
class Finding:
    """One gradient-masking check: what it measured, whether it fired, and what was run about it.

    Attributes:
        check: Identifier, e.g. "zero-gradients", "black-box-stronger".
        title: The tell-tale sign in words.
        fired: Whether the sign was seen.
        severity: "suspicious" or "broken", the weight of the sign when it fires.
        detail: The measured numbers.
        action: What bastion ran about it (empty when it did not fire).
    """

    check: str
    title: str
    fired: bool
    severity: str
    detail: str
    action: str = ""
