"""The verdict's rules as pure functions: the curve against evidence, the audit, FGSM against PGD, the decision."""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks import FGSM, PGD
from bastion.data import ImageSet
from bastion.evaluate.context import EvalContext
from bastion.evaluate.masking import audit_finding, curve_evidence_finding, decide, fgsm_finding
from bastion.evaluate.result import CurvePoint, Finding
from bastion.threat import ThreatModel


def _finding(fired: bool, severity: str = "suspicious") -> Finding:
    return Finding("x", "x", fired, severity, "")


def test_decide():
    assert decide([_finding(False), _finding(False, "broken")], 0.5, 0.5) == "reliable"
    assert decide([_finding(True)], 0.5, 0.48) == "suspicious"
    assert decide([_finding(True, "broken")], 0.5, 0.5) == "broken"
    assert decide([_finding(True)], 0.5, 0.3) == "broken"  # escalation moved the number: the first one was wrong
    assert decide([], 0.5, 0.4) == "broken"  # --adaptive found what the standard attacks missed


def test_the_curve_is_held_against_an_independent_bound_not_its_shape():
    # A model trained at a larger eps holds beyond a smaller one: a flat curve, and no alarm without evidence.
    flat = [CurvePoint(0.0, 0.98), CurvePoint(0.1, 0.97), CurvePoint(0.2, 0.96)]
    assert not curve_evidence_finding(flat, None, "").fired
    # The minimal norms agree with it: still no alarm.
    agreeing = [CurvePoint(0.0, 0.98), CurvePoint(0.1, 0.975), CurvePoint(0.2, 0.97)]
    assert not curve_evidence_finding(flat, agreeing, "fab").fired
    # A minimal-norm attack broke 10% of the points within eps 0.2 that the curve's attack called robust.
    contradicting = [CurvePoint(0.0, 0.98), CurvePoint(0.1, 0.96), CurvePoint(0.2, 0.86)]
    finding = curve_evidence_finding(flat, contradicting, "the minimal norms of fab")
    assert finding.fired and "eps=0.2" in finding.detail and "86.0%" in finding.detail
    # Radii the two do not share are not compared, nor is eps 0 (the clean accuracy).
    assert not curve_evidence_finding(flat, [CurvePoint(0.15, 0.0)], "fab").fired
    assert not curve_evidence_finding([CurvePoint(0.0, 0.9)], [CurvePoint(0.0, 0.5)], "fab").fired


def test_the_audit_fires_on_misses_chance_does_not_explain():
    assert not audit_finding(30, 0, 10, 0, []).fired
    assert not audit_finding(11, 1, 4, 0, ["apgd-ce"]).fired  # one miss: a 1-3% miss rate does that often
    assert not audit_finding(11, 0, 4, 3, ["apgd-t"]).fired  # misses near the boundary only: escalation fixes them
    assert audit_finding(11, 2, 4, 0, ["square"]).fired
    assert not audit_finding(30, 2, 10, 0, ["square"]).fired and audit_finding(30, 3, 10, 0, ["square"]).fired
    finding = audit_finding(30, 3, 10, 1, ["square"])
    assert "3 of 30 random and 1 of 10 boundary-nearest" in finding.detail and "square" in finding.detail
    assert not audit_finding(0, 0, 5, 5, []).fired


class _Cliff(nn.Module):
    """Class 1 iff the mean pixel m < 0.25; the only gradient is a slope near m = 0.5 pointing down.

    From m = 0.5 one FGSM step of 0.3 lands at m = 0.2 (fooled); PGD's first small step leaves the
    slope, finds zero gradient and stalls at m = 0.425: FGSM is stronger than PGD.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        slope = torch.where((m - 0.5).abs() < 0.01, 50 * (m - 0.5), torch.zeros_like(m))
        z = torch.where(m < 0.25, -torch.ones_like(m), torch.ones_like(m)) + slope - slope.detach()
        return torch.stack([z, -z], dim=1)


def test_fgsm_stronger_than_pgd_fires():
    x = torch.full((8, 1, 4, 4), 0.5)
    y = torch.zeros(8, dtype=torch.long)
    data = ImageSet(images=x, labels=y, classes=["a", "b"], name="toy")
    threat = ThreatModel("linf", 0.3)
    ctx = EvalContext(_Cliff(), data, threat, torch.device("cpu"), torch.float32)
    broken = FGSM()(ctx.model, x, y, threat).success
    assert broken.all()
    finding = fgsm_finding(ctx, broken, PGD(steps=10, random_start=False), limit=8, stream=0)
    assert finding.fired and "PGD failed on 8 of 8" in finding.detail
    honest = EvalContext(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), data, threat, torch.device("cpu"),
                         torch.float32)
    assert not fgsm_finding(honest, torch.zeros(8, dtype=torch.bool), PGD(), limit=8, stream=0).fired
