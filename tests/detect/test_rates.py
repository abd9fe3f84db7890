"""Detection rates on a constructed case, the guard outcome, and the runtime wrapper's fallbacks."""

import math
from dataclasses import dataclass

import pytest
import torch

from bastion.detect import (
    ABSTAIN,
    CalibratedDetector,
    DetectedModel,
    Detector,
    detection_rates,
    guard_outcome,
)
from bastion.errors import InputError


class MeanPixel(Detector):
    """A score known in closed form: the image's mean pixel."""

    name = "mean-pixel"

    def score(self, model, x):
        return x.flatten(1).mean(1)


@dataclass(frozen=True)
class Batch:
    x_adv: torch.Tensor
    success: torch.Tensor


def _images(means):
    return torch.tensor(means).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous()


def _guard(threshold=0.5):
    return CalibratedDetector(MeanPixel(), threshold=threshold, fpr=0.05, n_calibration=100, calibration_fpr=0.04)


def test_detection_rate_counts_only_successful_examples(tiny_cnn):
    clean = _images([0.2, 0.7, 0.3, 0.1])
    pgd = Batch(_images([0.9, 0.9, 0.1, 0.9, 0.1, 0.1]), torch.tensor([1, 1, 1, 0, 0, 1], dtype=torch.bool))
    none = Batch(_images([0.9, 0.8]), torch.tensor([False, False]))
    rates = detection_rates(tiny_cnn, [_guard()], clean, {"pgd": pgd, "weak": none})
    row = rates.detectors[0]
    assert row.clean_fpr == 0.25 and row.n_clean == 4
    pgd_row = row.attacks[0]
    assert (pgd_row.n_attacked, pgd_row.n_success, pgd_row.n_detected) == (6, 4, 2)
    assert rates.rate("mean-pixel", "pgd") == 0.5
    assert pgd_row.evasion_rate == pytest.approx(2 / 6)
    assert math.isnan(rates.rate("mean-pixel", "weak"))
    as_dict = rates.to_dict()["mean-pixel"]
    assert as_dict["attacks"]["weak"]["rate"] is None and as_dict["clean_fpr"] == 0.25
    with pytest.raises(InputError):
        rates.rate("mean-pixel", "fgsm")
    with pytest.raises(InputError):
        detection_rates(tiny_cnn, [_guard()], clean, {"bad": Batch(_images([0.5]), torch.tensor([True, False]))})


def test_guard_outcome_needs_misclassified_and_unflagged(tiny_cnn):
    x = _images([0.9, 0.1, 0.9, 0.1])
    with torch.no_grad():
        predicted = tiny_cnn(x).argmax(1)
    y = torch.stack([(predicted[0] + 1) % 4, (predicted[1] + 1) % 4, predicted[2], predicted[3]])
    outcome = guard_outcome(tiny_cnn, [_guard()], x, y)
    assert outcome.misclassified.tolist() == [True, True, False, False]
    assert outcome.flagged.tolist() == [True, False, True, False]
    assert outcome.evaded.tolist() == [False, True, False, False]
    assert outcome.detection_rate == 0.5 and outcome.evasion_rate == 0.25


def test_detected_model_abstains_or_falls_back(tiny_cnn):
    x = _images([0.9, 0.1, 0.6])
    with torch.no_grad():
        own = tiny_cnn(x).argmax(1)
    decision = DetectedModel(tiny_cnn, _guard())(x)
    assert decision.flagged.tolist() == [True, False, True]
    assert decision.labels.tolist() == [ABSTAIN, int(own[1]), ABSTAIN]
    assert torch.equal(decision.model_labels, own) and decision.flag_rate == pytest.approx(2 / 3)
    routed = DetectedModel(tiny_cnn, [_guard()], fallback=lambda flagged: torch.full((len(flagged),), 7))
    assert routed.predict(x).labels.tolist() == [7, int(own[1]), 7]
    with pytest.raises(InputError, match="distinct"):
        DetectedModel(tiny_cnn, [_guard(0.5), CalibratedDetector(MeanPixel(), 0.05, 0.05, 100, 0.05)])
    with pytest.raises(InputError):
        DetectedModel(tiny_cnn, [])
    with pytest.raises(InputError):
        DetectedModel(tiny_cnn, _guard(), fallback="abstain")
