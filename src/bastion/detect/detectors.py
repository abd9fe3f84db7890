"""Scores that flag adversarial inputs at runtime: higher means more suspicious.

Every detector has `score(model, x) -> Tensor` of shape (B,), differentiable with respect to `x`
(adaptive attacks follow it; wrap calls in `torch.no_grad()` when no gradient is needed). A score
alone flags nothing: `bastion.detect.calibrate` turns it into a threshold at a chosen false-positive
rate on clean data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.detect.registry import DETECTORS, make_detector
from bastion.detect.squeezers import BitDepth, MedianSmoothing, Squeezer, parse_squeezer
from bastion.errors import InputError

__all__ = ["DETECTORS", "Confidence", "Detector", "Entropy", "FeatureSqueezing", "Margin", "make_detector"]


class Detector(ABC):
    """A per-input suspicion score computed from the classifier's outputs."""

    name: ClassVar[str]

    @abstractmethod
    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """(B,) scores for a batch `x` (B, C, H, W) in [0, 1]; higher means more suspicious."""

    def surrogate(self, model: nn.Module, x: Tensor) -> Tensor:
        """(B,) a differentiable stand-in for the score that adaptive attacks descend; the score itself by default.

        A detector whose score saturates (distances between confident softmax outputs) gives a
        surrogate with useful gradients, so that its evaluation does not rest on a weak attack.
        """
        return self.score(model, x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Confidence(Detector):
    """One minus the top softmax probability (Hendrycks & Gimpel, ICLR 2017, arXiv:1610.02136).

    Low confidence is the baseline signal of inputs the model was not trained on.
    """

    name: ClassVar[str] = "confidence"

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """1 - max_k softmax(f(x))_k, in [0, 1 - 1/K]."""
        logits: Tensor = model(x)
        return 1.0 - logits.softmax(dim=1).amax(dim=1)


class Entropy(Detector):
    """Shannon entropy of the softmax, in nats: high when the prediction is spread over classes."""

    name: ClassVar[str] = "entropy"

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """-sum_k p_k log p_k, in [0, log K]."""
        logits: Tensor = model(x)
        log_p = logits.log_softmax(dim=1)
        return -(log_p.exp() * log_p).sum(dim=1)


class Margin(Detector):
    """Minus the logit margin between the top two classes: inputs close to a decision boundary.

    Plain PGD stops as soon as a point crosses the boundary, so its examples sit just past it; an
    attacker who knows this pushes further (see `DetectorAwarePGD`).
    """

    name: ClassVar[str] = "margin"

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """-(z_(1) - z_(2)) with z the logits sorted decreasingly; <= 0."""
        logits: Tensor = model(x)
        top2 = logits.topk(2, dim=1).values
        return top2[:, 1] - top2[:, 0]


class FeatureSqueezing(Detector):
    """Feature squeezing (Xu, Evans & Qi, NDSS 2018, arXiv:1704.01155), joint detection of section V-C.

    score(x) = max_i || softmax(f(x)) - softmax(f(s_i(x))) ||_1 over the squeezers s_i, in [0, 2]:
    a legitimate input's prediction barely moves when detail is squeezed out, an adversarial
    perturbation tuned to the exact pixels often does not survive. Scores are differentiable
    through BPDA: each squeezer's `differentiable` form (straight-through for bit-depth rounding).

    Args:
        squeezers: Squeezer objects or specs ("bit-depth:1", "median:2"); None gives the squeezers
            Xu et al. evaluate on MNIST, 1-bit depth and 2x2 and 3x3 median smoothing (for natural
            images such as CIFAR-10 use ("bit-depth:5", "median:2"), their choice there without
            non-local means).
    """

    name: ClassVar[str] = "feature-squeezing"

    def __init__(self, squeezers: Sequence[Squeezer | str] | None = None) -> None:
        chosen = (BitDepth(1), MedianSmoothing(2), MedianSmoothing(3)) if squeezers is None else squeezers
        self.squeezers: tuple[Squeezer, ...] = tuple(parse_squeezer(s) if isinstance(s, str) else s for s in chosen)
        if not self.squeezers:
            raise InputError("feature squeezing needs at least one squeezer")

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """Max over squeezers of the L1 distance between softmax outputs, (B,) in [0, 2]."""
        batch = len(x)
        squeezed = [s.differentiable(x) for s in self.squeezers]
        # One forward pass for the original and all squeezed copies.
        logits: Tensor = model(torch.cat([x, *squeezed]))
        probs = logits.softmax(dim=1)
        original, others = probs[:batch], probs[batch:].reshape(len(squeezed), batch, -1)
        distance: Tensor = (others - original).abs().sum(dim=2).amax(dim=0)
        return distance

    def __repr__(self) -> str:
        return f"FeatureSqueezing({[s.name for s in self.squeezers]!r})"
