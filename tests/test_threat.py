import math

import pytest
import torch

from bastion.errors import InputError
from bastion.threat import L0, L2, Linf, ThreatModel, get_norm, parse_eps


@pytest.mark.parametrize(("text", "value"), [("8/255", 8 / 255), ("0.3", 0.3), (0.5, 0.5), (2, 2.0), ("0", 0.0)])
def test_parse_eps_accepts_numbers_and_fractions(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["-0.1", -1.0, "nan", float("nan"), "inf", "abc", "1/0", "", True])
def test_parse_eps_rejects_bad_values(bad):
    with pytest.raises(InputError):
        parse_eps(bad)


def test_get_norm_names():
    assert get_norm("Linf").name == "linf" and get_norm("L2").name == "l2" and get_norm("inf").name == "linf"
    with pytest.raises(InputError, match="linf, l2"):
        get_norm("l7")


@pytest.mark.parametrize("norm", [Linf(), L2()])
def test_projection_lands_in_ball_and_keeps_inner_points(norm):
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(32, 3, 5, 5, generator=g)
    projected = norm.project(delta, 0.5)
    assert (norm.measure(projected) <= 0.5 + 1e-6).all()
    small = delta * 1e-3
    assert torch.allclose(norm.project(small, 0.5), small)


@pytest.mark.parametrize("norm", [Linf(), L2()])
def test_random_init_inside_ball_and_reproducible(norm):
    like = torch.zeros(64, 1, 6, 6)
    a = norm.random_init(like, 0.3, torch.Generator().manual_seed(3))
    b = norm.random_init(like, 0.3, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (norm.measure(a) <= 0.3 + 1e-6).all()
    assert (norm.measure(a) > 0).all()


def test_l2_random_init_is_uniform_in_the_ball():
    # For the uniform distribution on a d-ball of radius r, E[||delta||] = r * d / (d + 1).
    d = 4
    like = torch.zeros(20000, 1, 2, 2)
    radii = L2().measure(L2().random_init(like, 1.0, torch.Generator().manual_seed(0)))
    assert radii.mean().item() == pytest.approx(d / (d + 1), abs=0.01)


def test_ascent_directions():
    grad = torch.tensor([[[[3.0, -4.0]]]])
    assert torch.equal(Linf().ascent(grad), torch.tensor([[[[1.0, -1.0]]]]))
    assert torch.allclose(L2().ascent(grad), torch.tensor([[[[0.6, -0.8]]]]))
    assert torch.equal(L2().ascent(torch.zeros(1, 2)), torch.zeros(1, 2))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_clip_maps_into_ball_and_box(norm):
    threat = ThreatModel(norm, 0.2)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 4, 4, generator=g)
    far = x + 3 * torch.randn(16, 1, 4, 4, generator=g)
    clipped = threat.clip(x, far)
    assert threat.contains(x, clipped).all()
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_threat_model_validates():
    assert ThreatModel("linf", "8/255").eps == pytest.approx(8 / 255)
    assert math.isclose(ThreatModel("l2", 0.5).with_eps("1/2").eps, 0.5)
    with pytest.raises(InputError):
        ThreatModel("linf", -0.1)
    with pytest.raises(InputError):
        ThreatModel("linf", 0.1, bounds=(1.0, 0.0))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_unbounded_ball_contains_the_whole_box(norm):
    threat = ThreatModel.unbounded(norm, (1, 4, 4))
    x = torch.zeros(1, 1, 4, 4)
    corner = torch.ones(1, 1, 4, 4)
    assert torch.equal(threat.clip(x, corner), corner)
    assert threat.eps == pytest.approx(1.0 if norm == "linf" else 4.0)


def test_l0_counts_changed_pixels_across_channels():
    delta = torch.zeros(2, 3, 4, 4)
    delta[0, 0, 1, 1] = 0.5
    delta[0, 2, 1, 1] = -0.1  # same pixel, another channel: still one pixel
    delta[0, 1, 3, 0] = 1e-3
    assert torch.equal(L0().measure(delta), torch.tensor([2.0, 0.0]))
    assert get_norm("L0").name == "l0" and get_norm("0").name == "l0"


def test_l0_projection_keeps_the_k_largest_pixels():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(8, 3, 5, 5, generator=g)
    projected = L0().project(delta, 3.7)  # a pixel count: rounded down to 3
    assert (L0().measure(projected) == 3).all()
    energy = delta.pow(2).sum(1).flatten(1)
    kept = projected.pow(2).sum(1).flatten(1) > 0
    assert torch.equal(kept, energy >= energy.topk(3, dim=1).values[:, -1:])
    mask = kept.reshape(8, 1, 5, 5).expand_as(delta)
    assert torch.equal(projected[mask], delta[mask]) and not projected[~mask].any()
    assert torch.equal(L0().project(delta, 25), delta) and not L0().project(delta, 0).any()


def test_l0_threat_model_clip_random_init_and_ascent():
    threat = ThreatModel("l0", 2)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 4, 4, generator=g)
    clipped = threat.clip(x, x + torch.randn(16, 3, 4, 4, generator=g))
    assert threat.contains(x, clipped).all() and (L0().measure(clipped - x) <= 2).all()
    start = L0().random_init(x, 2, torch.Generator().manual_seed(2))
    assert (L0().measure(start) == 2).all() and start.abs().max() <= 1
    assert torch.equal(start, L0().random_init(x, 2, torch.Generator().manual_seed(2)))
    grad = torch.randn(4, 3, 4, 4, generator=g)
    step = L0().ascent(grad)
    assert (L0().measure(step) == 1).all() and set(step.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert ThreatModel.unbounded("l0", (3, 4, 4)).eps == 16
