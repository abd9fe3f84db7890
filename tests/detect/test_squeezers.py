"""Squeezers match the reference implementation; feature squeezing scores 0 on inputs the squeezers leave alone."""

import numpy as np
import pytest
import torch

from bastion.detect import BitDepth, FeatureSqueezing, MedianSmoothing, parse_squeezer
from bastion.errors import InputError


@pytest.mark.parametrize("size", [2, 3, 4])
def test_median_matches_scipy(size):
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(size))
    reference = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="nearest")
    assert np.array_equal(MedianSmoothing(size)(x).numpy(), reference)


def test_bit_depth_levels_and_straight_through_gradient():
    x = torch.tensor([0.0, 0.2, 0.49, 0.51, 0.8, 1.0]).view(1, 1, 1, 6).requires_grad_(True)
    assert BitDepth(1)(x).flatten().tolist() == [0, 0, 0, 1, 1, 1]
    assert set(BitDepth(2)(x).detach().flatten().mul(3).round().tolist()) <= {0, 1, 2, 3}
    out = BitDepth(1).differentiable(x)
    assert torch.equal(out, BitDepth(1)(x))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))


def _half_plane() -> torch.Tensor:
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:] = 1.0
    return x


@pytest.mark.parametrize("x", [torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8), _half_plane()])
def test_score_is_zero_for_inputs_the_squeezers_leave_unchanged(tiny_cnn, x):
    detector = FeatureSqueezing()
    assert all(torch.equal(s(x), x) for s in detector.squeezers)
    with torch.no_grad():
        assert torch.equal(detector.score(tiny_cnn, x), torch.zeros(len(x)))


def test_score_is_positive_and_bounded_on_noise(tiny_cnn):
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        scores = FeatureSqueezing().score(tiny_cnn, x)
    assert scores.shape == (16,) and (scores > 0).all() and (scores <= 2).all()


def test_bad_squeezers_are_refused():
    assert parse_squeezer("bits:5") == BitDepth(5) and parse_squeezer("median:3") == MedianSmoothing(3)
    for spec in ("bit-depth:0", "bit-depth:9", "median:1", "median:x", "blur:3"):
        with pytest.raises(InputError):
            parse_squeezer(spec)
    with pytest.raises(InputError):
        FeatureSqueezing([])
