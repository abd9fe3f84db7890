"""Attacks, each registered by name in `ATTACKS`.

Names load on first access (PEP 562); reading `ATTACKS` first imports every attack module below,
which registers them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.attacks.apgd import APGD, APGDDLR
    from bastion.attacks.apgd_targeted import APGDT
    from bastion.attacks.autoattack import AutoAttack
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
    from bastion.attacks.versions import VERSIONS

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
    "Square",
    "Transfer",
]

_HOMES = {
    "APGD": "bastion.attacks.apgd",
    "APGDDLR": "bastion.attacks.apgd",
    "APGDT": "bastion.attacks.apgd_targeted",
    "ATTACKS": "bastion.attacks.base",
    "Attack": "bastion.attacks.base",
    "AttackResult": "bastion.attacks.base",
    "AutoAttack": "bastion.attacks.autoattack",
    "CW": "bastion.attacks.cw",
    "FAB": "bastion.attacks.fab",
    "FABT": "bastion.attacks.fab",
    "FGSM": "bastion.attacks.fgsm",
    "FastAPGD": "bastion.attacks.fast",
    "HopSkipJump": "bastion.attacks.hopskipjump",
    "OnePixel": "bastion.attacks.onepixel",
    "PGD": "bastion.attacks.pgd",
    "SmoothAdv": "bastion.attacks.smoothadv",
    "Square": "bastion.attacks.square",
    "Transfer": "bastion.attacks.transfer",
    "VERSIONS": "bastion.attacks.versions",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, complete=("ATTACKS",))
