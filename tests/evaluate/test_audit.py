"""The audit catches a cascade that missed points, escalates on all of them with the AutoAttack members that found
the misses (or all members), and bounds what it saw."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from bastion.attacks.autoattack import member_specs
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.evaluate import STAGES, Runner
from bastion.evaluate.context import EvalContext
from bastion.evaluate.records import AttackKind
from bastion.evaluate.stages import AuditResult, AuditStage
from bastion.evaluate.stages.audit import clean_margins
from bastion.evaluate.verdict import build_verdict
from bastion.models import load_model
from bastion.threat import ThreatModel

BUDGET = {"steps": 8, "n_queries": 40}
WEAK = {"attack": "fgsm", "params": {}, "role": "a cascade too weak for this model"}


def _context(eps: float, limit: int = 24) -> EvalContext:
    model = load_model("zoo:mnist-cnn").module.eval()
    data = load_dataset("mnist-sample", limit=limit)
    return EvalContext(model, data, ThreatModel("linf", eps), torch.device("cpu"), torch.float32, batch_size=12)


def _run(ctx: EvalContext, *stages: tuple[str, str, dict]) -> AuditResult:
    Runner([STAGES.get(kind)(name=name, **settings) for name, kind, settings in stages]).run(ctx)
    result = ctx.results["audit"]
    assert isinstance(result, AuditResult)
    return result


@pytest.mark.parametrize("escalate", ["finders", "all"])
def test_a_cascade_that_missed_points_is_caught_and_the_run_escalates(escalate):
    ctx = _context(0.1)
    audit = _run(ctx, ("clean", "clean", {}), ("fgsm", "attack", WEAK),
                 ("audit", "audit", {"sample": 4, "closest": 2, "share": None, "escalate": escalate, **BUDGET}))
    assert len(audit.audited) == 6 and audit.missed and set(audit.missed) <= set(audit.audited)
    assert audit.escalated and audit.bound is None and audit.finders
    assert not ctx.robust[audit.missed].any()  # a miss counts as broken
    roles = [r.role for r in audit.records]
    assert roles[0].startswith("audit:")
    assert [r.kind for r in audit.records] == [AttackKind.AUDIT] + [AttackKind.AUDIT_ESCALATION] * (len(roles) - 1)
    members = [name for name, _ in member_specs("standard")]
    escalated_with = [r.name for r in audit.records[1:]]
    assert escalated_with == (members if escalate == "all" else [m for m in members if m in audit.finders])
    assert ", ".join(audit.finders) in audit.reason
    # After the escalation the number is AutoAttack's on every point the weak cascade left robust.
    alone = _context(0.1)
    _run(alone, ("clean", "clean", {}), ("fgsm", "attack", WEAK),
         ("audit", "audit", {"sample": 0, "closest": len(alone.data), "share": None, "escalate": "none", **BUDGET}))
    assert ctx.robust.sum() <= alone.robust.sum() + 1


def test_an_unknown_escalation_is_refused_in_one_line():
    with pytest.raises(InputError, match="escalate must be one of"):
        STAGES.get("audit")(escalate="sometimes")


def test_an_audit_without_a_miss_states_the_rule_of_three_bound_and_does_not_escalate():
    ctx = _context(0.005)  # too small a ball for any attack to break a correct point of this model
    audit = _run(ctx, ("clean", "clean", {}), ("audit", "audit", {"sample": 10, "closest": 3, "share": None, **BUDGET}))
    assert audit.missed == [] and not audit.escalated and len(audit.records) == 1
    assert (audit.escalated_points, audit.scope_points) == (0, 0)
    assert audit.sampled == 10 and audit.bound == pytest.approx(3 / 10)
    assert "rule of three" in STAGES.get("audit").headline(audit)


def test_the_sample_is_seeded_and_holds_the_boundary_nearest_points():
    first, second = _context(0.005), _context(0.005)
    settings = {"sample": 5, "closest": 3, "share": None, **BUDGET}
    a = _run(first, ("clean", "clean", {}), ("audit", "audit", settings))
    b = _run(second, ("clean", "clean", {}), ("audit", "audit", settings))
    assert a.audited == b.audited
    x, y = first.data.batch(torch.arange(len(first.data)))
    with torch.no_grad():
        logits = first.model(x)
    true = logits.gather(1, y[:, None]).squeeze(1)
    margin = true - logits.scatter(1, y[:, None], float("-inf")).max(1).values
    candidates = first.correct.nonzero().squeeze(1)
    nearest = candidates[torch.argsort(margin[candidates])][:3]
    assert set(nearest.tolist()) <= set(a.audited)


def test_the_audit_takes_at_most_its_share_of_the_robust_points_in_the_proportion_of_its_settings():
    ctx = _context(0.005, limit=48)  # nearly every point robust: the share decides the size
    x, y = ctx.data.batch(torch.arange(48))
    with torch.no_grad():
        robust = int((ctx.model(x).argmax(1) == y).sum())
    audit = _run(ctx, ("clean", "clean", {}), ("audit", "audit", {"sample": 30, "closest": 10, "share": 0.25,
                                                                  **BUDGET}))
    assert len(audit.audited) == round(0.25 * robust) and audit.closest == round(len(audit.audited) / 4)
    assert audit.bound == pytest.approx(3 / audit.sampled)
    tiny = _run(_context(0.005), ("clean", "clean", {}), ("audit", "audit", {"sample": 3, "closest": 1,
                                                                             "share": 0.001, **BUDGET}))
    assert (tiny.sampled, tiny.closest) == (1, 1)  # never below one point of each kind
    assert tiny.bound is None and "too few to bound" in AuditStage.headline(tiny)  # 3/1 bounds nothing
    with pytest.raises(InputError, match="share"):
        STAGES.get("audit")(share=0.0)


def test_an_audit_of_no_point_is_refused_in_one_line():
    with pytest.raises(InputError, match="at least one point"):
        STAGES.get("audit")(sample=0, closest=0)


def _left_by_fgsm_by_margin() -> torch.Tensor:
    """The 48 points' indices that FGSM at eps 0.1 leaves robust, by increasing clean margin."""
    before = _context(0.1, limit=48)
    Runner([STAGES.get("clean")(name="clean"), STAGES.get("attack")(name="fgsm", **WEAK)]).run(before)
    robust = before.robust.nonzero().squeeze(1)
    margins = clean_margins(before, robust)
    return robust[torch.argsort(margins[robust], stable=True)]


def test_misses_near_the_boundary_alone_escalate_on_the_near_stratum_only():
    by_margin = _left_by_fgsm_by_margin()
    near = by_margin[:math.ceil(0.25 * len(by_margin))]
    far = by_margin[len(near):]

    ctx = _context(0.1, limit=48)
    audit = _run(ctx, ("clean", "clean", {}), ("fgsm", "attack", WEAK),
                 ("audit", "audit", {"sample": 0, "closest": 3, "share": None, "near_share": 0.25,
                                     "escalate": "all", **BUDGET}))
    assert set(audit.audited) == set(by_margin[:3].tolist())
    assert audit.missed and audit.scope == "near" and audit.escalated
    assert all(r.attacked <= len(near) - len(audit.missed) for r in audit.records[1:])
    assert ctx.robust[far].all()  # the far stratum is left to the bound, not attacked
    assert "nearest the boundary" in audit.reason
    assert "on the robust points nearest the boundary" in AuditStage.headline(audit)
    # A fired audit finding names the same scope as its action in the verdict.
    fired = replace(audit, finding=replace(audit.finding, fired=True))
    verdict = build_verdict([fired], 0.5, ctx.model)
    assert verdict.escalated and verdict.fired[0].action == f"escalated: {audit.escalation_text()}"
    assert audit.records[-1].robust_accuracy == ctx.robust.float().mean().item()
    with pytest.raises(InputError, match="near_share"):
        STAGES.get("audit")(near_share=0.0)


def test_the_near_escalation_goes_nearest_first_and_stops_after_a_group_it_breaks_none_of():
    by_margin = _left_by_fgsm_by_margin()

    ctx = _context(0.1, limit=48)
    group = 3
    audit = _run(ctx, ("clean", "clean", {}), ("fgsm", "attack", WEAK),
                 ("audit", "audit", {"sample": 0, "closest": 2, "share": None, "near_share": 1.0,
                                     "sequential": group, **BUDGET}))
    assert audit.escalated and audit.scope == "near"
    order = [i for i in by_margin.tolist() if i not in audit.audited]  # audited points are not attacked again
    assert audit.scope_points == len(order) and audit.escalated_points < len(order)  # it stopped early
    attacked, left = order[:audit.escalated_points], order[audit.escalated_points:]
    groups = [attacked[i:i + group] for i in range(0, len(attacked), group)]
    assert all(not ctx.robust[g].all() for g in groups[:-1])  # every group before the last broke a point
    assert ctx.robust[groups[-1]].all() and ctx.robust[left].all()  # the last broke none; the rest untouched
    assert audit.records[1].attacked == audit.escalated_points  # the first member ran on every attacked point
    assert all(r.attacked <= audit.escalated_points for r in audit.records[2:])
    assert f"the {audit.escalated_points} robust points nearest the boundary" in AuditStage.headline(audit)
    with pytest.raises(InputError, match="sequential"):
        STAGES.get("audit")(sequential=-1)
