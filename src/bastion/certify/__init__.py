"""Certified robustness by randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918)."""

from bastion.certify.classifier import SmoothedClassifier
from bastion.certify.dataset import certify_dataset
from bastion.certify.smoothing import Certificate, Smooth, clopper_pearson_lower, max_certifiable_radius
from bastion.certify.summary import certified_accuracy, summarize
from bastion.certify.votes import image_generator

__all__ = [
    "Certificate",
    "Smooth",
    "SmoothedClassifier",
    "certified_accuracy",
    "certify_dataset",
    "clopper_pearson_lower",
    "image_generator",
    "max_certifiable_radius",
    "summarize",
]
