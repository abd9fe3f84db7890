"""One-pixel attack: at most k changed pixels, found by differential evolution where they exist."""

import pytest
import torch

from bastion.attacks import OnePixel
from bastion.errors import InputError
from bastion.threat import L0, ThreatModel
from tests.conftest import linear_model


def _changed_pixels(x_adv, x):
    return L0().measure(x_adv - x)


@pytest.fixture
def many(tiny_cnn):
    """64 images labelled by the tiny model (more points, so that some have a one-pixel adversarial)."""
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return x, tiny_cnn(x).argmax(1)


@pytest.mark.parametrize("k", [1, 3])
def test_changes_at_most_k_pixels_and_nothing_where_it_fails(k, tiny_cnn, toy_batch):
    x, y = toy_batch
    result = OnePixel(pixels=k, population=30, steps=15)(tiny_cnn, x, y, ThreatModel("l0", k),
                                                         generator=torch.Generator().manual_seed(0))
    changed = _changed_pixels(result.x_adv, x)
    assert result.success.any() and (~result.success).any()
    # Fooled images change between 1 and k pixels; the others are returned untouched.
    assert ((changed >= 1) & (changed <= k))[result.success].all()
    assert (changed[~result.success] == 0).all()
    assert torch.equal(result.norms, changed)


def test_finds_the_one_pixel_that_matters():
    # Only pixel (3, 5) counts: 0.2 there is class 0, anything above 0.5 is class 1.
    w = torch.zeros(1, 8, 8)
    w[0, 3, 5] = 1.0
    model = linear_model(w, bias=-0.5)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[:, 0, 3, 5] = 0.2
    y = torch.zeros(6, dtype=torch.long)
    attack = OnePixel(pixels=1, population=20, steps=50)
    result = attack(model, x, y, ThreatModel("l0", 1), generator=torch.Generator().manual_seed(0))
    assert result.success.all()
    changed = (result.x_adv - x).abs().squeeze(1) > 0
    assert changed.sum(dim=(1, 2)).eq(1).all() and changed[:, 3, 5].all()
    # Early stop: each image leaves the search once fooled, far below population * (steps + 1) queries.
    assert result.passes.forward_samples < 6 * 20 * 51 / 2


def test_differential_evolution_matches_exhaustive_search(tiny_cnn, many):
    x, y = many
    # Exhaustive one-pixel search over the 64 positions at the extreme values 0 and 1.
    fooled_by_search = torch.zeros(len(x), dtype=torch.bool)
    with torch.no_grad():
        for pos in range(64):
            for value in (0.0, 1.0):
                z = x.clone().flatten(1)
                z[:, pos] = value
                fooled_by_search |= tiny_cnn(z.reshape(x.shape)).argmax(1) != y
    result = OnePixel(pixels=1, population=40, steps=30)(tiny_cnn, x, y, ThreatModel("l0", 1),
                                                         generator=torch.Generator().manual_seed(1))
    assert fooled_by_search.sum() >= 3
    assert result.success.sum() >= 0.8 * fooled_by_search.sum()


def test_targeted_and_budget_taken_from_the_threat_model(tiny_cnn, many):
    x, y = many
    target = (y + 1) % 4
    result = OnePixel(population=30, steps=15)(tiny_cnn, x, y, ThreatModel("l0", 4), target=target,
                                               generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.success, result.predictions == target) and result.success.any()
    assert (result.norms <= 4).all()
    capped = OnePixel(pixels=5, population=10, steps=2)(tiny_cnn, x, y, ThreatModel("l0", 2.5))
    assert (capped.norms <= 2).all()


def test_refuses_lp_threat_models(tiny_cnn, toy_batch):
    x, y = toy_batch
    with pytest.raises(InputError, match="l0"):
        OnePixel()(tiny_cnn, x, y, ThreatModel("linf", 0.1))
    with pytest.raises(InputError, match="population"):
        OnePixel(population=3)(tiny_cnn, x, y, ThreatModel("l0", 1))
