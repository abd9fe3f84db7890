"""bastion: attack, defend, certify and evaluate the adversarial robustness of PyTorch models.

Everything a user needs from Python is a top-level name: the attacks, `ThreatModel`, `evaluate`
(callable: `bastion.evaluate(model, data, eps=0.3)`), `Smooth`, `load_model` and `load_dataset`.
"""
from bastion import evaluate
from bastion.attacks import (
    APGD,
    APGDDLR,
    APGDT,
    ATTACKS,
    CW,
    FAB,
    FABT,
    FGSM,
    PGD,
    Attack,
    AttackResult,
    AutoAttack,
    HopSkipJump,
    OnePixel,
    SmoothAdv,
    Square,
    Transfer,
)
from bastion.certify import Smooth
from bastion.data import ImageSet, load_dataset
from bastion.errors import InputError
from bastion.evaluate import EvalConfig, EvalResult, evaluate_robustness
from bastion.models import load_model
from bastion.threat import L2, Linf, ThreatModel, parse_eps
from bastion.version import __version__

__all__ = [
    "APGD",
    "APGDDLR",
    "APGDT",
    "ATTACKS",
    "CW",
    "FAB",
    "FABT",
    "FGSM",
    "L2",
    "PGD",
    "Attack",
    "AttackResult",
    "AutoAttack",
    "EvalConfig",
    "EvalResult",
    "HopSkipJump",
    "ImageSet",
    "InputError",
    "Linf",
    "OnePixel",
    "Smooth",
    "SmoothAdv",
    "Square",
    "ThreatModel",
    "Transfer",
    "__version__",
    "evaluate",
    "evaluate_robustness",
    "load_dataset",
    "load_model",
    "parse_eps",
]
