"""SmoothAdv on linear models and smoothed classifiers (tests/attacks/test_contract.py covers its contract)."""

import pytest
import torch

from bastion.attacks.smoothadv import SmoothAdv
from bastion.certify import SmoothedClassifier
from bastion.errors import InputError
from bastion.threat import ThreatModel
from tests.conftest import linear_model


def test_moves_points_towards_the_boundary_of_a_linear_model():
    # f(x) = sign(w.x - 0.5) on 16 pixels, w = e_0: the attack must lower x_0 (class 1 -> class 0).
    w = torch.zeros(16)
    w[0] = 1.0
    model = linear_model(w, -0.5)
    x = torch.full((4, 1, 4, 4), 0.5)
    x[:, 0, 0, 0] = torch.tensor([0.6, 0.7, 0.85, 0.9])
    y = torch.ones(4, dtype=torch.long)
    result = SmoothAdv(sigma=0.25, n_samples=16, steps=5)(model, x, y, ThreatModel("l2", 0.3),
                                                          generator=torch.Generator().manual_seed(0))
    moved = result.x_adv - x
    assert (moved[:, 0, 0, 0] < -0.25).all()  # almost the whole budget along -w
    assert result.success.tolist() == [True, True, False, False]  # distances 0.1, 0.2 < eps 0.3 < 0.35, 0.4


def test_on_a_smoothed_classifier_success_is_judged_on_g():
    w = torch.zeros(16)
    w[0] = 1.0
    base = linear_model(w, -0.5)
    smoothed = SmoothedClassifier(base, 2, sigma=0.25, n=400)
    x = torch.full((2, 1, 4, 4), 0.5)
    x[:, 0, 0, 0] = torch.tensor([0.6, 1.0])
    y = torch.ones(2, dtype=torch.long)
    result = SmoothAdv(n_samples=8, steps=5)(smoothed, x, y, ThreatModel("l2", 0.3),
                                             generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.predictions, smoothed(result.x_adv).argmax(1))
    assert result.success.tolist() == [True, False]  # g's boundary is f's: 0.1 away, then 0.5 away


def test_bad_hyperparameters_are_one_line_errors():
    for kwargs in ({"sigma": 0.0}, {"n_samples": 0}, {"steps": 0}, {"rel_step": -1.0}):
        with pytest.raises(InputError):
            SmoothAdv(**kwargs)
