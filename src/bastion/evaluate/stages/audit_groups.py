"""The audit's escalation on the robust points nearest the boundary first, a group at a time (`AuditStage`).

Misses thin out with the clean margin, so a group in which the members break no point marks
where they end: the escalation stops there.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import torch
from torch import nn

from bastion.attacks import Attack
from bastion.evaluate.context import EvalContext
from bastion.evaluate.records import AttackKind, AttackRecord
from bastion.evaluate.stages.attack import attack_stage
from bastion.evaluate.stages.clean import mean_of
from bastion.passes import PassCount

__all__ = ["escalate_in_groups"]


def escalate_in_groups(ctx: EvalContext, members: list[tuple[str, Attack]], seen: dict[str, nn.Module | None],
                       order: torch.Tensor, group: int) -> tuple[list[AttackRecord], int]:
    """Run `members` on `order`, `group` points at a time, until a group of which they break none.

    Returns one record per member (summed over the groups; its robust accuracy counts what it and
    the members before it broke) and how many points the escalation attacked.
    """
    before = ctx.robust.clone()
    records: dict[str, AttackRecord] = {}
    broken_by = {name: torch.zeros_like(ctx.robust) for name, _ in members}  # by it or a member before it
    attacked = 0
    for start in range(0, len(order), group):
        points = order[start:start + group]
        where = replace(ctx, robust=torch.zeros_like(ctx.robust))
        where.robust[points] = True
        for name, attack in members:
            record = attack_stage(where, attack, f"audit escalation: {name}", model=seen[name],
                                  stream=f"escalation/{name}", kind=AttackKind.AUDIT_ESCALATION)
            records[name] = record if name not in records else _summed(records[name], record)
            broke = points[~where.robust[points]]  # by this member or one before it, in this group
            broken_by[name][broke] = True
        attacked += len(points)
        ctx.robust[broke] = False
        if not broke.numel():
            break
    return [replace(records[name], robust_accuracy=mean_of(before & ~broken_by[name])) for name, _ in members
            if name in records], attacked


def _summed(first: AttackRecord, second: AttackRecord) -> AttackRecord:
    """One member's record over two groups of points."""
    passes = PassCount(**first.passes) + PassCount(**second.passes)
    return replace(first, attacked=first.attacked + second.attacked, fooled=first.fooled + second.fooled,
                   passes=asdict(passes), seconds=first.seconds + second.seconds)
