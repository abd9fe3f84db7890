"""Sequential certification: its tests are anytime-valid, its decisions sound, its samples its own."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import beta, binomtest, norm
from torch import nn

from bastion.certify.confseq import log_evalue_above, log_evalue_below, threshold
from bastion.certify.decisions import CERTIFIED, RadiusTests
from bastion.certify.sequential import certify_sequential, round_sizes
from bastion.certify.smoothing import Smooth
from bastion.certify.votes import image_generator


class Threshold(nn.Module):
    """A base classifier on 1x1x1 images with a known top-class probability under N(0, sigma^2) noise at x = 0.

    f(x) = 0 if x < t else 1, with t = sigma * Phi^-1(p): P(f(0 + e) = 0) = p exactly.
    """

    def __init__(self, p, sigma):
        super().__init__()
        self.t = sigma * float(norm.ppf(p))

    def forward(self, x):
        v = x.reshape(len(x), -1)[:, :1]
        return torch.cat([self.t - v, v - self.t], dim=1)


def _prob(radius, sigma):
    return float(norm.cdf(radius / sigma))


@pytest.mark.parametrize(("k", "n", "q"), [(30, 30, 0.9), (95, 100, 0.8), (400, 500, 0.85), (10, 40, 0.5)])
def test_the_evalues_are_the_truncated_beta_mixtures_they_claim(k, n, q):
    def likelihood_ratio(r):
        return math.exp(k * math.log(r / q) + (n - k) * math.log((1 - r) / (1 - q)))

    def prior(r):
        return 1 / (math.pi * math.sqrt(r * (1 - r)))

    above = quad(lambda r: likelihood_ratio(r) * prior(r), q, 1, limit=200)[0] / quad(prior, q, 1)[0]
    below = quad(lambda r: likelihood_ratio(r) * prior(r), 0, q, limit=200)[0] / quad(prior, 0, q)[0]
    assert float(log_evalue_above(k, n, q)) == pytest.approx(math.log(above), rel=1e-6, abs=1e-6)
    assert float(log_evalue_below(k, n, q)) == pytest.approx(math.log(below), rel=1e-6, abs=1e-6)


def test_no_stream_at_the_threshold_crosses_more_often_than_alpha_over_every_look():
    """Ville: 20,000 Bernoulli streams with p = q, looked at after every round up to 10,000 draws."""
    rng = np.random.default_rng(0)
    alpha, sigma, streams = 0.05, 1.0, 20_000
    q = _prob(0.5, sigma)
    tests = RadiusTests([0.5], sigma, alpha, streams, budget=10_000, optimism=None)
    k = np.zeros(streams, dtype=np.int64)
    n = np.zeros(streams, dtype=np.int64)
    rows = np.arange(streams)
    for total in round_sizes(16, 1.1, 10_000):
        k += rng.binomial(total - n, q)
        n[:] = total
        tests.update(rows, k, n)
    false = int((tests.certified_prefix() >= 2).sum())  # radius 0 and 0.5 certified: p > q claimed
    assert binomtest(false, streams, alpha, alternative="greater").pvalue > 0.01, false / streams
    # The mirror test is valid too (refuting p >= q), and the tests are not vacuous: most streams stay open.
    refuted = int((tests.status[:, 1] == 2).sum())
    assert binomtest(refuted, streams, alpha, alternative="greater").pvalue > 0.01
    assert (tests.status[:, 1] == 0).mean() > 0.8


def test_a_classifier_at_the_threshold_is_falsely_certified_at_most_alpha_of_2000_times():
    sigma, alpha, radius, reps = 0.5, 0.05, 0.25, 2000
    base = Threshold(_prob(radius, sigma), sigma)  # pA = q(radius): not robust at `radius`
    x = torch.zeros(reps, 1, 1, 1)
    found = certify_sequential(base, x, num_classes=2, sigma=sigma, radii=[radius], n0=16, budget=4000, alpha=alpha,
                               batch_size=20_000, generators=[image_generator(7, i) for i in range(reps)])
    false = sum(c.radius >= radius for c in found)
    assert binomtest(false, reps, alpha, alternative="greater").pvalue > 0.01, false / reps
    assert all(c.prediction in (0, -1) for c in found)
    assert all(c.samples == 16 + c.n for c in found)


def test_clear_points_stop_early_and_the_answers_are_right():
    sigma, alpha = 0.5, 0.001
    x = torch.zeros(1, 1, 1, 1)

    def run(p):
        base = Threshold(p, sigma)
        return certify_sequential(base, x, num_classes=2, sigma=sigma, radii=[0.5, 1.0], n0=16, budget=30_000,
                                  alpha=alpha, batch_size=10_000, generators=[image_generator(0, 0)])[0]

    robust = run(0.9999)  # q(1) = 0.977: certified at both radii from a few hundred samples
    assert robust.decisions == {"0.5": "certified", "1": "certified"} and robust.radius == 1.0
    assert robust.samples < 600
    middle = run(0.92)  # certified at 0.5 (q = 0.841), refuted at 1
    assert middle.decisions["0.5"] == "certified" and middle.radius == 0.5
    assert middle.decisions["1"] in ("refuted", "budget")  # shown below q(1), or out of the budget's reach
    assert middle.samples < 3000
    weak = run(0.55)  # the prediction only
    assert weak.prediction == 0 and weak.radius == 0.0 and weak.decisions["0.5"] in ("refuted", "budget")
    wrong = Threshold(0.3, sigma)  # class 1 has 0.7
    answer = certify_sequential(wrong, x, num_classes=2, sigma=sigma, radii=[0.5], n0=16, budget=30_000, alpha=alpha,
                                batch_size=10_000, generators=[image_generator(0, 0)])[0]
    assert answer.top == 1 and answer.prediction == 1


def test_same_seed_same_certificates_whatever_the_other_points():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(6, 1, 4, 4)
    settings = {"num_classes": 3, "sigma": 0.25, "radii": [0.1, 0.3], "n0": 16, "budget": 3000, "alpha": 0.01,
                "batch_size": 500}
    all_six = certify_sequential(base, x, generators=[image_generator(3, i) for i in range(6)], **settings)
    again = certify_sequential(base, x, generators=[image_generator(3, i) for i in range(6)], **settings)
    three = certify_sequential(base, x[[1, 3, 5]], generators=[image_generator(3, i) for i in (1, 3, 5)], **settings)
    assert all_six == again
    assert [all_six[i] for i in (1, 3, 5)] == three


def test_the_certified_set_is_a_prefix_of_the_radii():
    tests = RadiusTests([0.5, 1.0], 0.5, 0.001, 1, budget=100)
    tests.status[0] = [CERTIFIED, 2, CERTIFIED]  # a higher radius cannot count above a refuted one
    assert tests.certified_prefix().tolist() == [1]
    assert tests.decisions(0, [0.5, 1.0]) == {"0.5": "refuted", "1": "budget"}


def test_sequential_agrees_with_fixed_n_on_the_zoo_noise_model_except_at_the_margin():
    """Points certified at a radius by one procedure and not the other lie near that radius's threshold."""
    from bastion.data import load_dataset
    from bastion.models import load_zoo_model

    model = load_zoo_model("mnist-cnn-noise")
    x, _ = load_dataset("mnist-sample:eval").batch(slice(0, 8))
    sigma, alpha, radii, n = 0.5, 0.001, [0.5, 1.0], 2000
    fixed = Smooth(model, 10, sigma).certify_many(x, 100, n, alpha, batch_size=2000, seed=11)
    found = certify_sequential(model, x, num_classes=10, sigma=sigma, radii=radii, n0=16, budget=n, alpha=alpha,
                               batch_size=2000, generators=[image_generator(12, i) for i in range(8)])
    for f, s in zip(fixed, found, strict=True):
        for r in radii:
            if (f.radius >= r and not f.abstained) != (s.radius >= r and s.prediction != -1):
                p_hat, q = f.count / f.n, threshold(r, sigma)[0]
                assert abs(p_hat - q) < 4 * math.sqrt(max(q * (1 - q), 1e-4) / n), (r, f, s)
    assert sum(s.samples for s in found) < sum(100 + n for _ in fixed) / 3


def test_iss_gives_more_samples_to_points_whose_radius_still_grows_with_n():
    from bastion.certify.iss import expected_radius, iss_sample_size

    settings = {"budget": 100_000, "alpha": 0.001, "sigma": 0.5}
    unanimous = iss_sample_size(100, 100, decline=0.05, **settings)
    middling = iss_sample_size(85, 100, decline=0.05, **settings)
    assert middling < unanimous <= 100_000
    assert iss_sample_size(100, 100, decline=0.1, **settings) < unanimous  # a looser decline costs less
    # The plan keeps the expected radius within the decline of the full budget's, at the planning estimate.
    for k0 in (85, 97, 100):
        n = iss_sample_size(k0, 100, decline=0.05, **settings)
        p = 1.0 if k0 == 100 else float(beta.ppf(norm.cdf(1.0), k0 + 1, 100 - k0))
        full, chosen = expected_radius(p, np.array([100_000.0, float(n)]), 0.001, 0.5)
        assert full - chosen <= 0.05 + 1e-9


class Recorder(nn.Module):
    """Remembers every input it sees; votes by the sign of the first pixel."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        v = x.reshape(len(x), -1)[:, :1]
        return torch.cat([-v, v], dim=1)


def test_sound_sampling_shows_the_model_only_grid_points_and_lowers_the_bound_by_the_slack():
    from bastion.certify.sound import GRID, slack

    x = torch.full((2, 1, 3, 3), 0.1)  # 0.1 is not a float: unsound sums carry its rounding in their low bits
    model = Recorder()
    sound = Smooth(model, 2, 0.25, sound=True).certify_many(x, 20, 200, 0.01, seed=1)
    seen = torch.cat(model.seen).double()
    assert seen.dtype == torch.float64 and torch.equal(seen, torch.round(seen / GRID) * GRID)
    model.seen.clear()
    Smooth(model, 2, 0.25).certify_many(x, 20, 200, 0.01, seed=1)
    plain = torch.cat(model.seen).double()
    assert not torch.equal(plain, torch.round(plain / GRID) * GRID)
    margin = slack(x, 0.25)
    assert 0 < margin < 1e-7
    for cert in sound:
        expected = Smooth(model, 2, 0.25).certificate(cert.top, cert.count, cert.n, 0.01).p_lower - margin
        assert cert.p_lower == pytest.approx(max(expected, 0.0), abs=1e-15)
