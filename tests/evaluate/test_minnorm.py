import pytest
import torch

from bastion.evaluate.stages.min_norm import norm_profile


def test_accuracy_read_off_minimal_norms():
    norms = torch.tensor([0.1, 0.2, 0.3, 0.4, 9.0, 0.05])
    fooled = torch.tensor([True, True, True, True, False, True])
    correct = torch.tensor([True, True, True, True, True, False])
    profile = norm_profile(norms, fooled, correct, [0.0, 0.15, 0.25, 1.0])
    accuracy = [p["accuracy"] for p in profile["curve"]]
    assert accuracy == pytest.approx([5 / 6, 4 / 6, 3 / 6, 1 / 6])
    assert profile["found"] == 4 and profile["attacked"] == 5
    assert profile["median"] == pytest.approx(0.25)


def test_nothing_found():
    profile = norm_profile(torch.zeros(3), torch.zeros(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool), [0.5])
    assert profile["median"] is None and profile["curve"][0]["accuracy"] == 1.0
