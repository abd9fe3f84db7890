"""Certified robustness by randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918).

Fixed-n CERTIFY (`Smooth`), sequential decisions at given radii (`certify_sequential`, Voracek &
Hein, NeurIPS 2024), input-specific sample sizes (`certify_iss`, Chen et al., AAAI 2022), and a data
set at a time with any of them (`certify_dataset` with a `Procedure`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.certify.classifier import SmoothedClassifier
    from bastion.certify.dataset import certify_dataset
    from bastion.certify.iss import certify_iss
    from bastion.certify.procedure import Procedure
    from bastion.certify.sequential import SequentialCertificate, certify_sequential
    from bastion.certify.smoothing import (
        Certificate,
        Smooth,
        clopper_pearson_lower,
        max_certifiable_radius,
        randomized_clopper_pearson_lower,
    )
    from bastion.certify.summary import certified_accuracy, summarize
    from bastion.certify.votes import image_generator

__all__ = [
    "Certificate",
    "Procedure",
    "SequentialCertificate",
    "Smooth",
    "SmoothedClassifier",
    "certified_accuracy",
    "certify_dataset",
    "certify_iss",
    "certify_sequential",
    "clopper_pearson_lower",
    "image_generator",
    "max_certifiable_radius",
    "randomized_clopper_pearson_lower",
    "summarize",
]

_HOMES = {
    "Certificate": "bastion.certify.smoothing",
    "Procedure": "bastion.certify.procedure",
    "SequentialCertificate": "bastion.certify.sequential",
    "Smooth": "bastion.certify.smoothing",
    "SmoothedClassifier": "bastion.certify.classifier",
    "certified_accuracy": "bastion.certify.summary",
    "certify_dataset": "bastion.certify.dataset",
    "certify_iss": "bastion.certify.iss",
    "certify_sequential": "bastion.certify.sequential",
    "clopper_pearson_lower": "bastion.certify.smoothing",
    "image_generator": "bastion.certify.votes",
    "max_certifiable_radius": "bastion.certify.smoothing",
    "randomized_clopper_pearson_lower": "bastion.certify.smoothing",
    "summarize": "bastion.certify.summary",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
