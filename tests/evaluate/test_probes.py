"""Probes first: an attack stage told to follow them goes straight to the view whose gradients work."""

from __future__ import annotations

import torch

from bastion.data import load_dataset
from bastion.evaluate import STAGES, Runner
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stages import AttackStageResult, ChecksResult, ProbesResult
from bastion.models import load_zoo_model
from bastion.threat import ThreatModel
from tests.evaluate.test_straight_through_escalation import Hidden

PGD = {"attack": "pgd", "params": {"steps": 10, "n_restarts": 1}, "role": "main attack"}


def _run(model: torch.nn.Module, *stages: tuple[str, str, dict]) -> EvalContext:
    ctx = EvalContext(model, load_dataset("mnist-sample", limit=32), ThreatModel("linf", 0.3), torch.device("cpu"),
                      torch.float32, batch_size=16)
    Runner([STAGES.get(kind)(name=name, **settings) for name, kind, settings in stages]).run(ctx)
    return ctx


def test_shattered_gradients_send_the_attack_through_the_straight_through_view():
    plain = _run(Hidden("round"), ("clean", "clean", {}), ("pgd", "attack", PGD))
    probed = _run(Hidden("round"), ("clean", "clean", {}), ("probes", "probes", {"probe_points": 16}),
                  ("pgd", "attack", {**PGD, "adaptive": True}))
    probes = probed.results["probes"]
    assert isinstance(probes, ProbesResult) and probes.gradients_mislead and not probes.random
    record = probed.results["pgd"].record
    assert "straight-through round" in record.role
    assert plain.results["pgd"].record.fooled <= 2 and record.fooled >= 0.5 * record.attacked


def test_usable_gradients_leave_the_attack_on_the_plain_model_and_the_checks_reuse_the_probes():
    ctx = _run(load_zoo_model("mnist-cnn").eval(), ("clean", "clean", {}), ("probes", "probes", {"probe_points": 16}),
               ("pgd", "attack", {**PGD, "adaptive": True}),
               ("checks", "checks", {"probe_points": 16, "blackbox_queries": 10, "steps": 3}))
    probes, pgd, checks = ctx.results["probes"], ctx.results["pgd"], ctx.results["checks"]
    assert isinstance(pgd, AttackStageResult) and pgd.record.role == "main attack"
    assert not probes.gradients_mislead
    assert isinstance(checks, ChecksResult) and checks.findings[: len(probes.findings)] == probes.findings
