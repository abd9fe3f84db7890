import pytest
import torch

from bastion.errors import InputError
from bastion.losses import cross_entropy, cw_margin, dlr, dlr_targeted


def test_cw_margin_is_positive_exactly_when_misclassified():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    labels = torch.tensor([0, 0])
    assert torch.allclose(cw_margin(logits, labels), torch.tensor([-2.0, 2.0]))


def test_dlr_matches_its_formula_and_is_scale_and_shift_invariant():
    logits = torch.tensor([[4.0, 1.0, 0.5, -1.0]])
    labels = torch.tensor([1])
    expected = -(1.0 - 4.0) / (4.0 - 0.5)
    assert dlr(logits, labels).item() == pytest.approx(expected)
    assert dlr(3 * logits + 7, labels).item() == pytest.approx(expected)


def test_targeted_dlr_formula():
    logits = torch.tensor([[4.0, 1.0, 0.5, -1.0]])
    value = dlr_targeted(logits, torch.tensor([0]), torch.tensor([2])).item()
    assert value == pytest.approx(-(4.0 - 0.5) / (4.0 - (0.5 - 1.0) / 2))


def test_dlr_needs_enough_classes():
    with pytest.raises(InputError):
        dlr(torch.zeros(1, 2), torch.tensor([0]))
    with pytest.raises(InputError):
        dlr_targeted(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([1]))


def test_cross_entropy_per_sample():
    logits = torch.tensor([[0.0, 0.0]])
    assert cross_entropy(logits, torch.tensor([0])).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
