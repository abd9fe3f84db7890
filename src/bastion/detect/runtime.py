"""A classifier guarded by detectors at serving time: flagged inputs get a fallback, not a prediction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bastion.detect.calibrate import CalibratedDetector
from bastion.errors import InputError
from bastion.passes import attack_mode

__all__ = ["ABSTAIN", "DetectedModel", "Decision"]

#: The label `DetectedModel` returns for a flagged input when no other fallback is given.
ABSTAIN = -1

Fallback = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Decision:
    """What the guarded classifier answers for a batch.

    Attributes:
        labels: (B,) the model's label where no detector flags the input, the fallback's elsewhere
            (`ABSTAIN` by default).
        flagged: (B,) bool, True where at least one detector flags the input.
        model_labels: (B,) the model's own labels, flagged or not (for logging).
        scores: Each detector's (B,) scores, by name.
    """

    labels: Tensor
    flagged: Tensor
    model_labels: Tensor
    scores: dict[str, Tensor]

    @property
    def flag_rate(self) -> float:
        """Share of the batch flagged."""
        return float(self.flagged.float().mean()) if self.flagged.numel() else 0.0


class DetectedModel:
    """Classifier plus calibrated detectors: predict, flag, and fall back on flagged inputs.

    An input is flagged when any detector flags it; with detectors calibrated at rates a_1..a_m
    the clean inputs flagged are at most a_1 + ... + a_m (union bound), so calibrate each at the
    total rate divided by m when a total is what you need. As PROTOCOL.md puts it: at serving time
    flag inputs that look adversarial and fall back (abstain, route to a human, a conservative
    answer) rather than act on them. The guard raises the bar only against attackers who ignore
    it: `DetectorAwarePGD` shows how far one who knows it gets.

    Args:
        model: The classifier, images in [0, 1] to logits (B, K).
        detectors: One or more calibrated detectors.
        fallback: For flagged inputs: a label (default `ABSTAIN`, -1, outside the classes), or a
            function from the flagged inputs (F, C, H, W) to (F,) labels, e.g. a conservative model.

    Example:
        >>> guard = DetectedModel(model, [calibrate(FeatureSqueezing(), model, x_clean, 0.05)])
        >>> decision = guard.predict(x)
        >>> decision.labels  # -1 where flagged
    """

    def __init__(
        self, model: nn.Module, detectors: CalibratedDetector | Sequence[CalibratedDetector],
        fallback: int | Fallback = ABSTAIN,
    ) -> None:
        chosen = [detectors] if isinstance(detectors, CalibratedDetector) else list(detectors)
        if not chosen or not all(isinstance(d, CalibratedDetector) for d in chosen):
            raise InputError("DetectedModel needs one or more calibrated detectors (see bastion.detect.calibrate)")
        if len({d.name for d in chosen}) != len(chosen):
            raise InputError("DetectedModel needs detectors with distinct names")
        if not callable(fallback) and (isinstance(fallback, bool) or not isinstance(fallback, int)):
            raise InputError(f"fallback must be a label or a function of the flagged inputs, got {fallback!r}")
        self.model, self.detectors, self.fallback = model, chosen, fallback

    def predict(self, x: Tensor) -> Decision:
        """Labels for a batch (B, C, H, W) in [0, 1], with the fallback where flagged."""
        with attack_mode(self.model), torch.no_grad():
            model_labels = self.model(x).argmax(dim=1)
            scores = {d.name: d.detector.score(self.model, x) for d in self.detectors}
        flagged = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for d in self.detectors:
            flagged |= d.flags(scores[d.name])
        labels = model_labels.clone()
        if bool(flagged.any()):
            if callable(self.fallback):
                with torch.no_grad():
                    labels[flagged] = self.fallback(x[flagged]).to(labels)
            else:
                labels[flagged] = self.fallback
        return Decision(labels=labels, flagged=flagged, model_labels=model_labels, scores=scores)

    __call__ = predict

    def __repr__(self) -> str:
        names = ", ".join(f"{d.name}>{d.threshold:.4g}" for d in self.detectors)
        return f"DetectedModel({type(self.model).__name__}, [{names}], fallback={self.fallback!r})"
