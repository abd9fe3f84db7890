"""A stage's rows of the attack table add up to the stage: its work outside its attacks gets a row of its own.

The runner counts a stage's passes and seconds; each attack row counts its own part of them by the
same count (`bastion.passes.measuring`). What a stage spends outside its attacks (the probe pass
of an adaptive view, say) would leave the rows short of the stage's total; `with_overhead` shows
it as an explicit row of kind `OVERHEAD` (role "overhead: ..."), so the two tables of a report agree.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from bastion.evaluate.context import EvalContext
from bastion.evaluate.records import AttackKind, AttackRecord
from bastion.evaluate.shards import sum_over_processes
from bastion.evaluate.stages.clean import mean_of
from bastion.passes import Cost, PassCount

__all__ = ["OVERHEAD", "charged", "with_overhead"]

#: The name of a stage's overhead row.
OVERHEAD = "overhead"

#: Seconds outside the rows, with no pass among them, below which no overhead row is shown: passes decide
#: whether a row appears, so that a report's rows do not depend on the clock (runs on 1 and 3 processes agree).
_SLACK = 0.5


def with_overhead(ctx: EvalContext, records: list[AttackRecord], cost: Cost, what: str) -> list[AttackRecord]:
    """`records`, and a row for the rest of `cost` (the whole stage's, measured) when passes or time remain.

    `what` names the work outside the rows. Every process must call it (it sums over processes).
    """
    total = sum_over_processes(cost.passes)
    rest = total - sum((PassCount(**r.passes) for r in records), PassCount())
    seconds = cost.seconds - sum(r.seconds for r in records)
    if rest == PassCount() and seconds < _SLACK:
        return records
    return [*records, AttackRecord(
        name=OVERHEAD, role=f"overhead: {what}", kind=AttackKind.OVERHEAD, settings={}, norm=ctx.threat.norm.name,
        eps=ctx.threat.eps, attacked=0, fooled=0, robust_accuracy=mean_of(ctx.robust), passes=asdict(rest),
        seconds=max(0.0, seconds), stage=ctx.stage)]


def charged(record: AttackRecord, cost: Cost) -> AttackRecord:
    """`record` with `cost` (work done for it before it ran: a surrogate's distillation) added to its own.

    Every process must call it (it sums over processes).
    """
    passes = PassCount(**record.passes) + sum_over_processes(cost.passes)
    return replace(record, passes=asdict(passes), seconds=record.seconds + cost.seconds)
