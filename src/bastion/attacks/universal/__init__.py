"""Universal adversarial perturbations (Moosavi-Dezfooli et al. 2017; Shafahi et al. 2020): fit, score, save."""

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
