"""Common corruptions: severity 0 is the identity, distortion grows with severity, mCE follows the paper."""

import pytest
import torch

from bastion.corruptions import (
    CORRUPTIONS,
    CorruptionTable,
    corrupt,
    corruption_accuracy,
    mean_corruption_error,
)
from bastion.data import ImageSet, load_dataset
from bastion.errors import InputError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist-sample", limit=32).batch(slice(None))[0]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_severity_zero_is_the_identity(name, digits):
    out = corrupt(digits, name, 0, torch.Generator().manual_seed(0))
    assert torch.equal(out, digits) and out is not digits


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_distortion_grows_with_severity(name, digits):
    distances = [float((corrupt(digits, name, s, torch.Generator().manual_seed(0)) - digits).flatten(1)
                       .norm(dim=1).mean()) for s in range(6)]
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_colour_images_stay_in_the_box_and_keep_their_shape(name):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = corrupt(x, name, 5, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", ["gaussian-noise", "shot-noise", "impulse-noise", "motion-blur"])
def test_randomness_comes_from_the_generator(name, digits):
    a = corrupt(digits, name, 3, torch.Generator().manual_seed(7))
    b = corrupt(digits, name, 3, torch.Generator().manual_seed(7))
    c = corrupt(digits, name, 3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_inputs_raise_input_error(digits):
    with pytest.raises(InputError):
        corrupt(digits, "fog", 1)
    with pytest.raises(InputError):
        corrupt(digits, "jpeg", 6)


def test_accuracy_table_and_severity_zero_column_is_clean(tiny_cnn):
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = tiny_cnn(x).argmax(1)
    data = ImageSet(x, y, ["a", "b", "c", "d"], "toy")
    table = corruption_accuracy(tiny_cnn, data, corruptions=["contrast", "jpeg"], severities=[0, 5], batch_size=5)
    assert table.clean_accuracy == 1.0
    assert table.accuracy["contrast"][0] == 1.0 and table.accuracy["jpeg"][0] == 1.0
    again = corruption_accuracy(tiny_cnn, data, corruptions=["jpeg"], severities=[0, 5], batch_size=12)
    assert again.accuracy["jpeg"] == table.accuracy["jpeg"]


def test_mean_corruption_error_is_normalized_by_the_baseline():
    model = CorruptionTable(0.9, {"a": [0.8, 0.6], "b": [0.9, 0.9]}, [1, 2], 10, 0)
    base = CorruptionTable(0.8, {"a": [0.6, 0.4], "b": [0.7, 0.5]}, [1, 2], 10, 0)
    errors = mean_corruption_error(model, base)
    assert errors.ce["a"] == pytest.approx((0.2 + 0.4) / (0.4 + 0.6))
    assert errors.ce["b"] == pytest.approx(0.2 / 0.8)
    assert errors.mce == pytest.approx((0.6 + 0.25) / 2)
    assert errors.relative_ce["a"] == pytest.approx((0.1 + 0.3) / (0.2 + 0.4))
    assert mean_corruption_error(base, base).mce == pytest.approx(1.0)
    perfect = CorruptionTable(1.0, {"a": [1.0, 1.0], "b": [1.0, 1.0]}, [1, 2], 10, 0)
    assert mean_corruption_error(model, perfect).mce is None
    with pytest.raises(InputError):
        mean_corruption_error(model, CorruptionTable(0.8, {"a": [0.5]}, [1], 10, 0))
