"""Runtime detection of adversarial examples: scores, calibrated thresholds, a guarded model.

Also the adaptive attack that tests them (Xu et al. NDSS 2018; Carlini & Wagner AISec 2017).
Every detector is registered by name in `DETECTORS`, which lists them without importing torch.
Names load on first access (PEP 562), so `bastion.detect.registry` is light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.detect.adaptive import DetectorAwarePGD
    from bastion.detect.calibrate import CalibratedDetector, calibrate, conformal_threshold, score_batches
    from bastion.detect.detectors import Confidence, Detector, Entropy, FeatureSqueezing, Margin
    from bastion.detect.rates import (
        AttackDetection,
        DetectionRates,
        DetectorRates,
        GuardOutcome,
        detection_rates,
        guard_outcome,
    )
    from bastion.detect.registry import DETECTORS, make_detector
    from bastion.detect.runtime import ABSTAIN, Decision, DetectedModel
    from bastion.detect.squeezers import BitDepth, MedianSmoothing, Squeezer, parse_squeezer

__all__ = [
    "ABSTAIN",
    "DETECTORS",
    "AttackDetection",
    "BitDepth",
    "CalibratedDetector",
    "Confidence",
    "Decision",
    "DetectedModel",
    "DetectionRates",
    "Detector",
    "DetectorAwarePGD",
    "DetectorRates",
    "Entropy",
    "FeatureSqueezing",
    "GuardOutcome",
    "Margin",
    "MedianSmoothing",
    "Squeezer",
    "calibrate",
    "conformal_threshold",
    "detection_rates",
    "guard_outcome",
    "make_detector",
    "parse_squeezer",
    "score_batches",
]

_HOMES = {
    "ABSTAIN": "bastion.detect.runtime",
    "AttackDetection": "bastion.detect.rates",
    "BitDepth": "bastion.detect.squeezers",
    "CalibratedDetector": "bastion.detect.calibrate",
    "Confidence": "bastion.detect.detectors",
    "DETECTORS": "bastion.detect.registry",
    "Decision": "bastion.detect.runtime",
    "DetectedModel": "bastion.detect.runtime",
    "DetectionRates": "bastion.detect.rates",
    "Detector": "bastion.detect.detectors",
    "DetectorAwarePGD": "bastion.detect.adaptive",
    "DetectorRates": "bastion.detect.rates",
    "Entropy": "bastion.detect.detectors",
    "FeatureSqueezing": "bastion.detect.detectors",
    "GuardOutcome": "bastion.detect.rates",
    "Margin": "bastion.detect.detectors",
    "MedianSmoothing": "bastion.detect.squeezers",
    "Squeezer": "bastion.detect.squeezers",
    "conformal_threshold": "bastion.detect.calibrate",
    "detection_rates": "bastion.detect.rates",
    "guard_outcome": "bastion.detect.rates",
    "make_detector": "bastion.detect.registry",
    "parse_squeezer": "bastion.detect.squeezers",
    "score_batches": "bastion.detect.calibrate",
}

# `calibrate` is both the function and its module's name: the package attribute stays the function.
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, shadows=("calibrate",))
