"""The verdict's rules as pure functions: the plateau check, FGSM against PGD, and how findings decide it."""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks import FGSM, PGD
from bastion.data import ImageSet
from bastion.evaluate.context import EvalContext
from bastion.evaluate.masking import decide, fgsm_finding, plateau_finding
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


def test_plateau():
    falling = [CurvePoint(0.0, 0.9), CurvePoint(0.3, 0.6), CurvePoint(0.6, 0.02)]
    flat = [CurvePoint(0.0, 0.9), CurvePoint(0.3, 0.6), CurvePoint(0.6, 0.6)]
    assert not plateau_finding(falling, 0.3).fired
    assert plateau_finding(flat, 0.3).fired
    # A model trained at a larger eps holds beyond a smaller one, and still loses points: no alarm.
    robust_beyond = [CurvePoint(0.0, 0.98), CurvePoint(0.1, 0.97), CurvePoint(0.2, 0.895)]
    assert not plateau_finding(robust_beyond, 0.1).fired
    assert not plateau_finding(flat[:2], 0.3).fired  # nothing beyond eps to judge by


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
