"""Attacks, each registered by name in `ATTACKS` (imported here explicitly, which registers them)."""

from bastion.attacks.apgd import APGD, APGDDLR
from bastion.attacks.apgd_targeted import APGDT
from bastion.attacks.autoattack import VERSIONS, AutoAttack
from bastion.attacks.base import ATTACKS, Attack, AttackResult
from bastion.attacks.cw import CW
from bastion.attacks.fab import FAB, FABT
from bastion.attacks.fast import FastAPGD
from bastion.attacks.fgsm import FGSM
from bastion.attacks.hopskipjump import HopSkipJump
from bastion.attacks.onepixel import OnePixel
from bastion.attacks.pgd import PGD
from bastion.attacks.smoothadv import SmoothAdv
from bastion.attacks.square import Square
from bastion.attacks.transfer import Transfer

__all__ = [
    "ATTACKS",
    "APGD",
    "APGDDLR",
    "APGDT",
    "CW",
    "FAB",
    "FABT",
    "FGSM",
    "FastAPGD",
    "HopSkipJump",
    "OnePixel",
    "PGD",
    "SmoothAdv",
    "VERSIONS",
    "Attack",
    "AttackResult",
    "AutoAttack",
    "SmoothAdv",
    "Square",
    "Transfer",
]
