"""Randomized smoothing against closed forms: Clopper-Pearson from scipy, and a linear base classifier.

For f(x) = [w.x + b > 0] and noise N(0, sigma^2 I), the smoothed probability of f's class at x is
pA = Phi(distance / sigma), distance = |w.x + b| / ||w||, and the exact certified radius is the distance.
"""

import math

import pytest
import torch
from scipy.stats import beta, norm
from torch import nn

from bastion.certify import Certificate, Smooth, clopper_pearson_lower, image_generator, max_certifiable_radius
from bastion.errors import InputError
from tests.conftest import linear_model

SIGMA, N, ALPHA = 0.5, 50_000, 0.001


def _linear(d=16):
    w = torch.zeros(d)
    w[0], w[1] = 0.6, 0.8  # ||w|| = 1: w.x + b is the signed distance
    return linear_model(w, -0.7)


def _at_distance(distance, d=16):
    """A 1x4x4 image at signed distance `distance` from the boundary 0.6 x0 + 0.8 x1 = 0.7."""
    x = torch.full((1, 4, 4), 0.3)
    x.view(-1)[:2] = torch.tensor([0.5, 0.5]) + distance * torch.tensor([0.6, 0.8])
    return x


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (990, 1000), (99_999, 100_000), (7, 7)])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_lower_is_the_beta_quantile(k, n, alpha):
    expected = 0.0 if k == 0 else beta.ppf(alpha, k, n - k + 1)
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(expected, rel=1e-12, abs=0)


def test_clopper_pearson_rejects_bad_arguments():
    for k, n, alpha in ((3, 2, 0.1), (-1, 5, 0.1), (1, 0, 0.1), (1, 5, 0.0), (1, 5, 1.0)):
        with pytest.raises(InputError):
            clopper_pearson_lower(k, n, alpha)


def test_max_certifiable_radius_is_sigma_phi_inverse_alpha_root_n():
    assert max_certifiable_radius(0.25, 100_000, 0.001) == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 100_000)))


@pytest.mark.parametrize("distance", [-0.8, -0.3, 0.05, 0.2, 0.5, 1.0])
def test_certified_radius_matches_the_linear_closed_form(distance):
    smooth = Smooth(_linear(), 2, SIGMA)
    cert = smooth.certify(_at_distance(distance), 100, N, ALPHA, batch_size=10_000,
                          generator=torch.Generator().manual_seed(0))
    p_a = norm.cdf(abs(distance) / SIGMA)
    assert cert.prediction == int(distance > 0)
    # The certificate is sound (below the exact radius), and loses no more than the Clopper-Pearson gap
    # at a count 4 standard deviations under its mean.
    k_low = math.floor(N * p_a - 4 * math.sqrt(N * p_a * (1 - p_a)))
    floor = SIGMA * norm.ppf(clopper_pearson_lower(min(k_low, N), N, ALPHA))
    assert floor <= cert.radius <= abs(distance)
    assert cert.p_lower == pytest.approx(clopper_pearson_lower(cert.count, N, ALPHA))
    assert cert.radius == pytest.approx(SIGMA * norm.ppf(cert.p_lower))


def test_abstains_where_the_theory_says():
    # Abstain iff the lower bound on pA is < 1/2: with n = 50,000 and alpha = 0.001 that needs pA
    # above about 0.507, i.e. a distance above sigma * Phi^-1(0.507) = 0.009.
    smooth = Smooth(_linear(), 2, SIGMA)
    near = [smooth.certify(_at_distance(d), 100, N, ALPHA, batch_size=10_000,
                           generator=torch.Generator().manual_seed(s)) for s, d in enumerate((0.0, 0.001, -0.002))]
    far = [smooth.certify(_at_distance(d), 100, N, ALPHA, batch_size=10_000,
                          generator=torch.Generator().manual_seed(s)) for s, d in enumerate((0.03, -0.05))]
    assert all(c.abstained and c.radius == 0.0 and c.prediction == Smooth.ABSTAIN for c in near)
    assert not any(c.abstained for c in far)


def test_predict_abstains_on_a_fifty_fifty_classifier_and_answers_far_away():
    smooth = Smooth(_linear(), 2, SIGMA)
    on_boundary = [smooth.predict(_at_distance(0.0), 2000, ALPHA, generator=torch.Generator().manual_seed(s))
                   for s in range(5)]
    assert on_boundary == [Smooth.ABSTAIN] * 5
    assert smooth.predict(_at_distance(0.4), 2000, ALPHA, generator=torch.Generator().manual_seed(0)) == 1
    assert smooth.predict(_at_distance(-0.4), 2000, ALPHA, generator=torch.Generator().manual_seed(0)) == 0


def test_same_seed_same_radii_other_seed_other_counts():
    smooth = Smooth(_linear(), 2, SIGMA)
    x = _at_distance(0.3)
    runs = [smooth.certify(x, 50, 5000, ALPHA, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0].count != runs[2].count


@pytest.mark.parametrize(("n0", "n", "batch_size"), [(10, 1500, 1000), (100, 1000, 1000), (7, 33, 64), (3, 5, 1)])
def test_certify_many_equals_certify_one_at_a_time(tiny_cnn, n0, n, batch_size):
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    smooth = Smooth(tiny_cnn, 4, 0.25)
    many = smooth.certify_many(x, n0, n, 0.01, batch_size=batch_size, seed=11, indices=range(10, 16))
    one = [smooth.certify(x[i], n0, n, 0.01, batch_size=batch_size, generator=image_generator(11, 10 + i))
           for i in range(6)]
    assert many == one
    assert all(isinstance(c, Certificate) for c in many)


def test_the_model_is_left_as_it_was(tiny_cnn):
    tiny_cnn.train()
    params = [p.clone() for p in tiny_cnn.parameters()]
    Smooth(tiny_cnn, 4, 0.25).certify(torch.rand(1, 8, 8), 10, 100, 0.01, generator=torch.Generator().manual_seed(0))
    assert tiny_cnn.training and all(p.requires_grad for p in tiny_cnn.parameters())
    assert all(torch.equal(a, b) for a, b in zip(params, tiny_cnn.parameters(), strict=True))


def test_follows_the_models_dtype(tiny_cnn):
    cert = Smooth(tiny_cnn.double(), 4, 0.25).certify(torch.rand(1, 8, 8), 10, 100, 0.01,
                                                      generator=torch.Generator().manual_seed(0))
    assert cert.n == 100 and 0 <= cert.count <= 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_with_cpu_or_cuda_generator(tiny_cnn):
    model = tiny_cnn.cuda()
    x = torch.rand(3, 1, 8, 8)
    smooth = Smooth(model, 4, 0.25)
    on_device = smooth.certify_many(x, 10, 2000, 0.01, seed=3)
    again = [smooth.certify(x[i], 10, 2000, 0.01, generator=image_generator(3, i, "cuda")) for i in range(3)]
    assert on_device == again
    cpu_gen = smooth.certify(x[0], 10, 2000, 0.01, generator=torch.Generator().manual_seed(0))
    assert cpu_gen == smooth.certify(x[0], 10, 2000, 0.01, generator=torch.Generator().manual_seed(0))


def test_bad_inputs_are_one_line_errors(tiny_cnn):
    x = torch.rand(1, 8, 8)
    with pytest.raises(InputError, match="sigma"):
        Smooth(tiny_cnn, 4, 0.0)
    with pytest.raises(InputError, match="num_classes"):
        Smooth(tiny_cnn, 1, 0.5)
    smooth = Smooth(tiny_cnn, 4, 0.5)
    for kwargs, word in (({"n0": 0}, "n0"), ({"n": 0}, "n must"), ({"alpha": 1.0}, "alpha"),
                         ({"batch_size": 0}, "batch_size")):
        args = {"n0": 10, "n": 10, "alpha": 0.01, **kwargs}
        with pytest.raises(InputError, match=word):
            smooth.certify(x, args["n0"], args["n"], args["alpha"], batch_size=kwargs.get("batch_size", 10))
    with pytest.raises(InputError, match="outputs 4 classes"):
        Smooth(tiny_cnn, 3, 0.5).certify(x, 10, 10, 0.01)
    with pytest.raises(InputError, match="rejected"):
        Smooth(nn.Sequential(nn.Flatten(), nn.Linear(5, 4)), 4, 0.5).certify(x, 10, 10, 0.01)
