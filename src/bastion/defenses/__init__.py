"""Defenses as composable `nn.Module` wrappers, each registered in `DEFENSES` and declaring how to attack it.

Importing this package registers every defense (explicit imports, no star-imports).
"""

from bastion.defenses.adaptive import BPDA, EOT, AdaptiveModel, adaptive_model
from bastion.defenses.base import DEFENSES, Defended, Defense, find_defenses, shattered
from bastion.defenses.ensemble import Ensemble
from bastion.defenses.output import QuantizeOutput, Saturate
from bastion.defenses.preprocessing import JPEG, BitDepth, Gaussian, Median, Round
from bastion.defenses.randomization import ResizePad
from bastion.defenses.spec import apply_defenses, build_defense, parse_spec
from bastion.defenses.straight_through import StraightThrough, replace_gradient, straight_through_ops

__all__ = [
    "BPDA",
    "DEFENSES",
    "EOT",
    "JPEG",
    "AdaptiveModel",
    "BitDepth",
    "Defended",
    "Defense",
    "Ensemble",
    "Gaussian",
    "Median",
    "QuantizeOutput",
    "ResizePad",
    "Round",
    "Saturate",
    "StraightThrough",
    "adaptive_model",
    "apply_defenses",
    "build_defense",
    "find_defenses",
    "parse_spec",
    "replace_gradient",
    "shattered",
    "straight_through_ops",
]
