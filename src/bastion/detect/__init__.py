"""Runtime detection of adversarial examples: scores, calibrated thresholds, a guarded model.

Also the adaptive attack that tests them (Xu et al. NDSS 2018; Carlini & Wagner AISec 2017).
"""

from bastion.detect.adaptive import DetectorAwarePGD
from bastion.detect.calibrate import CalibratedDetector, calibrate, conformal_threshold, score_batches
from bastion.detect.detectors import DETECTORS, Confidence, Detector, Entropy, FeatureSqueezing, Margin, make_detector
from bastion.detect.rates import (
    AttackDetection,
    DetectionRates,
    DetectorRates,
    GuardOutcome,
    detection_rates,
    guard_outcome,
)
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
