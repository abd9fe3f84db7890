"""Thresholds at a target false-positive rate: at most the rate on calibration data, close to it on new data."""

import math

import pytest
import torch

from bastion.detect import Confidence, FeatureSqueezing, calibrate, conformal_threshold, score_batches
from bastion.errors import InputError


@pytest.mark.parametrize(("n", "fpr"), [(n, f) for n in (19, 100, 1000, 2001) for f in (0.01, 0.05, 0.1, 0.3)
                                          if n >= (1 - f) / f - 1e-9])
def test_calibration_points_are_flagged_at_most_at_the_target_rate(n, fpr):
    scores = torch.randn(n, generator=torch.Generator().manual_seed(n))
    threshold = conformal_threshold(scores, fpr)
    flagged = float((scores > threshold).float().mean())
    assert flagged <= fpr
    # Not needlessly conservative either: within 1/n (one point) plus the +1 correction of the target.
    assert flagged >= fpr - 2.0 / n - fpr / n


def test_held_out_rate_is_close_to_the_target():
    generator = torch.Generator().manual_seed(0)
    threshold = conformal_threshold(torch.randn(4000, generator=generator), 0.05)
    held_out = float((torch.randn(100_000, generator=generator) > threshold).float().mean())
    assert abs(held_out - 0.05) < 0.012


def test_expected_rate_never_exceeds_the_target_where_the_plain_quantile_does():
    """Over many calibration draws the new-point rate is (n + 1 - k) / (n + 1) <= fpr (exact for uniform scores)."""
    n, fpr, trials = 30, 0.05, 20_000
    scores = torch.rand(trials, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    thresholds = torch.tensor([conformal_threshold(row, fpr) for row in scores[:2000]], dtype=torch.float64)
    expected = float((1 - thresholds).mean())  # P(new uniform score > t), averaged over calibration sets
    assert expected <= fpr + 0.004
    plain = scores.sort(dim=1).values[:, math.ceil(n * (1 - fpr)) - 1]  # the uncorrected empirical quantile
    assert float((1 - plain).mean()) > fpr + 0.005


def test_too_few_points_or_bad_rates_are_refused():
    with pytest.raises(InputError, match="at least 19"):
        conformal_threshold(torch.rand(18), 0.05)
    assert conformal_threshold(torch.arange(19.0), 0.05) == 18.0  # k = n: the largest score
    for fpr in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match="between 0 and 1"):
            conformal_threshold(torch.rand(100), fpr)
    with pytest.raises(InputError, match="NaN"):
        conformal_threshold(torch.tensor([float("nan")] * 50), 0.05)


def test_calibrate_on_a_model(tiny_cnn):
    x = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    for detector in (Confidence(), FeatureSqueezing(["median:2"])):
        guard = calibrate(detector, tiny_cnn, x, fpr=0.1, batch_size=7)
        assert guard.n_calibration == 60 and guard.calibration_fpr <= 0.1
        assert torch.equal(guard.flag(tiny_cnn, x), score_batches(detector, tiny_cnn, x) > guard.threshold)
        assert guard.to_dict()["threshold"] == guard.threshold
