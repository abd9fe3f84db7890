"""bastion: attack, defend, certify and evaluate the adversarial robustness of PyTorch models.

Everything a user needs from Python is a top-level name: every registered attack (`bastion.PGD`,
`bastion.FastAPGD`, ...), `ThreatModel`, `evaluate` (callable: `bastion.evaluate(model, data, eps=0.3)`),
`Smooth`, `load_model` and `load_dataset`.

Names load on first access (PEP 562), so `import bastion` stays light: the attack classes come from
`ATTACKS`, the attack registry, when one is first read.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bastion.lazy import lazy_exports
from bastion.version import __version__

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
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
        FastAPGD,
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

    # At run time `__all__` is derived (`_attack_or_all`); tests/test_light_import.py checks the two agree.
    __all__ = [
        "APGD", "APGDDLR", "APGDT", "ATTACKS", "CW", "FAB", "FABT", "FGSM", "L2", "PGD", "Attack", "AttackResult",
        "AutoAttack", "EvalConfig", "EvalResult", "FastAPGD", "HopSkipJump", "ImageSet", "InputError", "Linf",
        "OnePixel", "Smooth", "SmoothAdv", "Square", "ThreatModel", "Transfer", "__version__", "evaluate",
        "evaluate_robustness", "load_dataset", "load_model", "parse_eps",
    ]

# Every top-level name that is not an attack class, and the module it lives in.
_HOMES = {
    "ATTACKS": "bastion.attacks",
    "Attack": "bastion.attacks",
    "AttackResult": "bastion.attacks",
    "EvalConfig": "bastion.evaluate",
    "EvalResult": "bastion.evaluate",
    "ImageSet": "bastion.data",
    "InputError": "bastion.errors",
    "L2": "bastion.threat",
    "Linf": "bastion.threat",
    "Smooth": "bastion.certify",
    "ThreatModel": "bastion.threat",
    "evaluate": "bastion.evaluate",
    "evaluate_robustness": "bastion.evaluate",
    "load_dataset": "bastion.data",
    "load_model": "bastion.models",
    "parse_eps": "bastion.threat",
}


def _attack_classes() -> dict[str, Any]:
    """Class name -> class of every attack registered in `ATTACKS` (importing the attacks registers them)."""
    registry = importlib.import_module("bastion.attacks").ATTACKS
    return {factory.__name__: factory for factory in map(registry.get, registry.names())}


def _attack_or_all(name: str) -> Any:
    """An attack class by its name, or `__all__`: `__version__`, `_HOMES`' names and every attack's class."""
    if name == "__all__":
        return sorted({"__version__", *_HOMES, *_attack_classes()})
    found = None if name.startswith("_") else _attack_classes().get(name)  # `_x` (tools probe those) loads nothing
    if found is None:
        raise AttributeError(f"module 'bastion' has no attribute {name!r}")
    return found


__getattr__, _dir = lazy_exports(__name__, _HOMES, fallback=_attack_or_all)


def __dir__() -> list[str]:
    return sorted(set(_dir()) | set(_attack_classes()))
