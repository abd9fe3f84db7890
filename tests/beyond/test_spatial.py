"""Spatial attacks and the shared affine transform: identity is exact, bounds hold, worst cases are worst."""

import pytest
import torch

from bastion.attacks.spatial import SPATIAL_ATTACKS, SpatialBounds, SpatialGrid, SpatialPGD
from bastion.errors import InputError
from bastion.transforms import rotate_translate


@pytest.fixture(scope="module")
def mnist():
    from bastion.data import load_dataset
    from bastion.models import load_model

    torch.set_num_threads(1)
    model = load_model("zoo:mnist-cnn", device="cpu").module.eval()
    x, y = load_dataset("mnist-sample", limit=24).batch(slice(None))
    return model, x, y


def test_zero_rotation_and_translation_is_the_identity(mnist):
    model, x, y = mnist
    zero = torch.zeros(len(x))
    assert torch.equal(rotate_translate(x, zero, zero, zero), x)
    result = SpatialGrid()(model, x, y, SpatialBounds(0.0, 0.0))
    with torch.no_grad():
        clean = model(x).argmax(1)
    assert torch.equal(result.x_adv, x)
    assert torch.equal(result.predictions, clean)
    assert result.accuracy == float((clean == y).float().mean())
    assert torch.equal(result.params, torch.zeros(len(x), 3))


def test_integer_shift_moves_pixels_exactly():
    x = torch.rand(3, 2, 9, 11, generator=torch.Generator().manual_seed(0))
    zero = torch.zeros(3)
    shifted = rotate_translate(x, zero, torch.full((3,), 2.0), torch.full((3,), -1.0))
    expected = torch.zeros_like(x)
    expected[..., :-1, 2:] = x[..., 1:, :-2]
    assert torch.allclose(shifted, expected, atol=1e-5)


def test_rotation_by_90_degrees_turns_the_image():
    x = torch.rand(2, 1, 7, 7, generator=torch.Generator().manual_seed(1))
    turned = rotate_translate(x, torch.full((2,), 90.0), torch.zeros(2), torch.zeros(2))
    assert torch.allclose(turned, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5)


@pytest.mark.parametrize("name", SPATIAL_ATTACKS.names())
def test_worst_case_is_within_bounds_and_no_better_than_identity(name, mnist):
    model, x, y = mnist
    bounds = SpatialBounds(20.0, 2.0)
    attack = SPATIAL_ATTACKS.create(name, **({"angles": 9, "translations": 3} if name == "spatial-grid" else
                                             {"steps": 5}))
    result = attack(model, x, y, bounds, generator=torch.Generator().manual_seed(0))
    assert bounds.contains(result.params).all()
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
        again = model(attack.transform(x, result.params)).argmax(1)
    assert torch.equal(again, result.predictions)  # x_adv is what the params say
    assert (result.success | ~clean_wrong).all() and bool((result.success >= clean_wrong).all())
    assert result.accuracy <= 1 - float(clean_wrong.float().mean())
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


def test_grid_finds_a_misclassifying_point_whenever_one_exists(mnist):
    model, x, y = mnist
    attack, bounds = SpatialGrid(angles=5, translations=3, max_batch=50), SpatialBounds(30.0, 3.0)
    result = attack(model, x, y, bounds)
    fooled_anywhere = torch.zeros(len(x), dtype=torch.bool)
    with torch.no_grad():
        for params in attack.grid(bounds, x):
            fooled_anywhere |= model(attack.transform(x, params.expand(len(x), 3))).argmax(1) != y
    assert torch.equal(result.success, fooled_anywhere)
    assert result.accuracy < float((model(x).argmax(1) == y).float().mean())


def test_first_order_steps_follow_the_gradient(mnist):
    model, x, y = mnist
    bounds = SpatialBounds(30.0, 3.0)
    weak = SpatialPGD(steps=1, rel_step=0.01)(model, x, y, bounds, generator=torch.Generator().manual_seed(0))
    strong = SpatialPGD(steps=20)(model, x, y, bounds, generator=torch.Generator().manual_seed(0))
    assert strong.loss.mean() > weak.loss.mean()
    assert strong.accuracy <= weak.accuracy


def test_bad_settings_raise_input_error():
    with pytest.raises(InputError):
        SpatialBounds(-1.0, 3.0)
    with pytest.raises(InputError):
        SpatialGrid(angles=0)
    with pytest.raises(InputError):
        SpatialPGD(padding_mode="wrap")
