"""Universal adversarial perturbations (Moosavi-Dezfooli et al. 2017; Shafahi et al. 2020): fit, score, save."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.attacks.universal.perturbation import (
        METHODS,
        UniversalPerturbation,
        UniversalResult,
        UniversalScore,
        evaluate_universal,
        fooling_rate,
    )

__all__ = ["METHODS", "UniversalPerturbation", "UniversalResult", "UniversalScore", "evaluate_universal",
           "fooling_rate"]

_HOMES = {
    "METHODS": "bastion.attacks.universal.perturbation",
    "UniversalPerturbation": "bastion.attacks.universal.perturbation",
    "UniversalResult": "bastion.attacks.universal.perturbation",
    "UniversalScore": "bastion.attacks.universal.perturbation",
    "evaluate_universal": "bastion.attacks.universal.perturbation",
    "fooling_rate": "bastion.attacks.universal.perturbation",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
