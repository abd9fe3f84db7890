"""bastion: attack, defend, certify and evaluate the adversarial robustness of PyTorch models."""

from bastion.attacks import ATTACKS, FGSM, PGD, Attack, AttackResult
from bastion.errors import InputError
from bastion.threat import L2, Linf, ThreatModel, parse_eps
from bastion.version import __version__

__all__ = [
    "ATTACKS",
    "FGSM",
    "L2",
    "PGD",
    "Attack",
    "AttackResult",
    "InputError",
    "Linf",
    "ThreatModel",
    "__version__",
    "parse_eps",
]
