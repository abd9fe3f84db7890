"""The adaptive attack gets past detectors that catch plain PGD, and stays inside the threat model."""

import pytest
import torch

from bastion.attacks import PGD
from bastion.detect import Confidence, DetectorAwarePGD, FeatureSqueezing, Margin, calibrate, guard_outcome
from bastion.errors import InputError
from bastion.threat import ThreatModel


def _setup(tiny_cnn):
    generator = torch.Generator().manual_seed(1)
    x_clean = torch.rand(200, 1, 8, 8, generator=generator)
    x = torch.rand(32, 1, 8, 8, generator=generator)
    with torch.no_grad():
        y = tiny_cnn(x).argmax(1)
    return x_clean, x, y


@pytest.mark.parametrize("detector", [Margin(), Confidence(), FeatureSqueezing()], ids=repr)
def test_adaptive_attack_lowers_the_detection_rate(tiny_cnn, detector):
    x_clean, x, y = _setup(tiny_cnn)
    guard = calibrate(detector, tiny_cnn, x_clean, fpr=0.1)
    threat = ThreatModel("linf", 0.2)
    plain = PGD(steps=10)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    adaptive = DetectorAwarePGD(guard, steps=20)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    before = guard_outcome(tiny_cnn, [guard], plain.x_adv, y)
    after = guard_outcome(tiny_cnn, [guard], adaptive.x_adv, y)
    assert before.detection_rate >= 0.2, "plain PGD's examples should be caught often enough to compare"
    assert after.detection_rate <= before.detection_rate - 0.15
    assert after.evasion_rate > before.evasion_rate
    assert (threat.norm.measure(adaptive.x_adv - x) <= threat.eps + 1e-6).all()
    assert torch.equal(adaptive.success, after.misclassified)


def test_same_seed_same_examples_and_validation(tiny_cnn):
    x_clean, x, y = _setup(tiny_cnn)
    guard = calibrate(Margin(), tiny_cnn, x_clean, fpr=0.1)
    attack = DetectorAwarePGD(guard, steps=5, n_restarts=2)
    threat = ThreatModel("l2", 1.0)
    a = attack(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(4))
    b = attack(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.x_adv, b.x_adv)
    assert "detectors" in attack.settings() and attack.settings()["update"] == "orthogonal"
    with pytest.raises(InputError):
        DetectorAwarePGD([])
    with pytest.raises(InputError):
        DetectorAwarePGD(guard, update="sideways")
    with pytest.raises(InputError):
        attack(tiny_cnn, x, y, threat, target=y)
