"""Target selection for targeted attacks (`bastion.attacks.targets`): random, least-likely, one class."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks.targets import select_targets
from bastion.errors import InputError
from tests.conftest import TinyCNN


@pytest.fixture()
def batch():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(2))
    return model, x, y


def test_untargeted_is_none(batch):
    assert select_targets(None, *batch) is None


def test_random_targets_never_the_true_class_and_follow_the_generator(batch):
    model, x, y = batch
    first = select_targets("random", model, x, y, torch.Generator().manual_seed(3))
    again = select_targets("random", model, x, y, torch.Generator().manual_seed(3))
    assert first is not None and again is not None
    assert torch.equal(first, again) and not bool((first == y).any())
    assert len(set(first.tolist())) > 1 and int(first.min()) >= 0 and int(first.max()) < 4


def test_least_likely_is_the_lowest_logit_and_an_index_targets_that_class(batch):
    model, x, y = batch
    least = select_targets("least-likely", model, x, y)
    assert least is not None and torch.equal(least, model(x).argmin(1))
    fixed = select_targets("2", model, x, y)
    assert fixed is not None and bool((fixed == 2).all())


@pytest.mark.parametrize(("spec", "message"), [("likely", "random, least-likely or a class index"),
                                               ("4", "is not a class of this model (0..3)")])
def test_bad_specs_are_refused_in_one_line(batch, spec, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select_targets(spec, *batch)
