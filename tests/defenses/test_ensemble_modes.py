"""Ensemble modes are a registry (issue 23 part 4): each registered mode combines members, errors name them all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from bastion.defenses import Ensemble
from bastion.defenses import ensemble as ensemble_module
from bastion.defenses.ensemble import MODES
from bastion.errors import InputError
from tests.conftest import TinyCNN


def _members() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [TinyCNN().eval() for _ in range(3)]


@pytest.fixture
def maximum() -> Iterator[str]:
    def combine(outputs: Tensor) -> Tensor:
        return outputs.amax(0)

    MODES.register("max", combine)
    try:
        yield "max"
    finally:
        MODES.unregister("max")
    assert "max" not in MODES.names()


def test_the_registered_modes_are_the_module_combiners_and_the_old_names():
    assert MODES is ensemble_module.MODES and {"logits", "probs", "vote"} <= set(MODES)
    assert [MODES.get(name).__module__ for name in MODES.names()] == ["bastion.defenses.ensemble"] * len(MODES)


@pytest.mark.parametrize("mode", MODES.names())
def test_every_mode_gives_one_score_row_per_input(mode):
    members, x = _members(), torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        outputs = torch.stack([m(x) for m in members])
        combined = Ensemble(members, mode)(x)
    assert combined.shape == outputs.shape[1:] and torch.isfinite(combined).all()
    torch.testing.assert_close(combined, MODES.get(mode)(outputs))


def test_an_unknown_mode_lists_every_registered_one():
    with pytest.raises(InputError, match="unknown ensemble mode 'median'") as caught:
        Ensemble(_members(), "median")
    assert str(caught.value).endswith(", ".join(MODES.names()))


def test_a_new_mode_is_listed_and_used(maximum):
    members, x = _members(), torch.rand(2, 1, 8, 8)
    assert maximum in MODES.names()
    with torch.no_grad():
        expected = torch.stack([m(x) for m in members]).amax(0)
        torch.testing.assert_close(Ensemble(members, maximum)(x), expected)
    with pytest.raises(InputError, match="max"):
        Ensemble(members, "median")
