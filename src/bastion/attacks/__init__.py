"""Attacks, each registered by name in `ATTACKS` (imported here explicitly, which registers them)."""

from bastion.attacks.base import ATTACKS, Attack, AttackResult
from bastion.attacks.fgsm import FGSM
from bastion.attacks.pgd import PGD

__all__ = ["ATTACKS", "FGSM", "PGD", "Attack", "AttackResult"]
