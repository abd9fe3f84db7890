"""Detection rates: how many successful adversarial examples each calibrated detector flags."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from scipy.stats import beta
from torch import Tensor, nn

from bastion.detect.calibrate import CalibratedDetector, score_batches
from bastion.errors import InputError
from bastion.passes import attack_mode

__all__ = ["AdversarialBatch", "AttackDetection", "DetectionRates", "DetectorRates", "GuardOutcome",
           "detection_rates", "fpr_check", "fpr_warnings", "guard_outcome"]


def fpr_check(n_false_positives: int, n_clean: int, target: float, confidence: float = 0.95) -> dict[str, Any]:
    """The held-out false-positive rate with its two-sided Clopper-Pearson interval, and whether it misses `target`.

    The conformal threshold guarantees the target on average over calibration sets; one held-out
    rate scatters around it. `missed` is True when the whole interval lies above the target (the
    detector flags significantly more clean points than promised); `above` when only the rate does.

    Args:
        n_false_positives: Held-out clean points flagged.
        n_clean: Held-out clean points.
        target: The false-positive rate the detector was calibrated for.
        confidence: Coverage of the interval (0.95).
    """
    if n_clean <= 0:
        return {"rate": None, "ci": None, "confidence": confidence, "target": target, "above": False, "missed": False}
    k, n, tail = n_false_positives, n_clean, (1.0 - confidence) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - tail, k + 1, n - k))
    rate = k / n
    return {"rate": rate, "ci": [low, high], "confidence": confidence, "target": target, "above": rate > target,
            "missed": low > target}


class AdversarialBatch(Protocol):
    """Anything with adversarial inputs and a success mask, such as `AttackResult`."""

    @property
    def x_adv(self) -> Tensor:
        """(N, C, H, W) adversarial inputs."""
        ...

    @property
    def success(self) -> Tensor:
        """(N,) bool, True where the attack fooled the classifier."""
        ...


@dataclass(frozen=True)
class AttackDetection:
    """One detector against one attack's examples.

    Attributes:
        attack: The attack's name.
        n_attacked: Adversarial examples given.
        n_success: Those that fool the classifier (the only ones a detector needs to catch).
        n_detected: Successful ones the detector flags.
    """

    attack: str
    n_attacked: int
    n_success: int
    n_detected: int

    @property
    def rate(self) -> float:
        """Detection rate n_detected / n_success (NaN when the attack never succeeded)."""
        return self.n_detected / self.n_success if self.n_success else math.nan

    @property
    def evasion_rate(self) -> float:
        """Share of the attacked points that fool the classifier undetected (NaN without points)."""
        return (self.n_success - self.n_detected) / self.n_attacked if self.n_attacked else math.nan


@dataclass(frozen=True)
class DetectorRates:
    """A calibrated detector's false-positive rate on held-out clean data and its detection rates."""

    calibrated: CalibratedDetector
    n_clean: int
    n_false_positives: int
    attacks: list[AttackDetection]

    @property
    def clean_fpr(self) -> float:
        """Share of the held-out clean points flagged."""
        return self.n_false_positives / self.n_clean if self.n_clean else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN written as None)."""
        return {**self.calibrated.to_dict(), "n_clean": self.n_clean, "clean_fpr": _json(self.clean_fpr),
                "clean_fpr_check": fpr_check(self.n_false_positives, self.n_clean, self.calibrated.fpr),
                "attacks": {a.attack: {**asdict(a), "rate": _json(a.rate), "evasion_rate": _json(a.evasion_rate)}
                            for a in self.attacks}}


@dataclass(frozen=True)
class DetectionRates:
    """Every detector's results; `rate(detector, attack)` looks one up."""

    detectors: list[DetectorRates]

    def rate(self, detector: str, attack: str) -> float:
        """Detection rate of `detector` on `attack`'s successful examples."""
        for d in self.detectors:
            for a in d.attacks:
                if d.calibrated.name == detector and a.attack == attack:
                    return a.rate
        raise InputError(f"no result for detector {detector!r} and attack {attack!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, keyed by detector name."""
        return {d.calibrated.name: d.to_dict() for d in self.detectors}


def _json(value: float) -> float | None:
    return None if math.isnan(value) else value


def detection_rates(
    model: nn.Module,
    detectors: Sequence[CalibratedDetector],
    x_clean: Tensor,
    adversarial: Mapping[str, AdversarialBatch],
    *,
    batch_size: int = 256,
) -> DetectionRates:
    """Flag rates of each detector on held-out clean inputs and on each attack's successful examples.

    Args:
        model: The classifier the detectors watch.
        detectors: Detectors calibrated on other clean data (a false-positive rate measured on the
            calibration points would be biased low).
        x_clean: (N, C, H, W) held-out clean inputs: the false-positive rate is measured on them.
        adversarial: By attack name, results with `x_adv` and `success` (e.g. `AttackResult`);
            only successful examples count, since a failed one needs no detecting.
        batch_size: Inputs per forward pass.
    """
    results = []
    for calibrated in detectors:
        false_positives = int(calibrated.flag(model, x_clean, batch_size).sum())
        rows = []
        for name, batch in adversarial.items():
            success = batch.success.bool()
            if success.shape != batch.x_adv.shape[:1]:
                raise InputError(f"attack {name!r}: success must hold one flag per adversarial example")
            flagged = calibrated.flag(model, batch.x_adv[success.to(batch.x_adv.device)], batch_size)
            rows.append(AttackDetection(name, len(success), int(success.sum()), int(flagged.sum())))
        results.append(DetectorRates(calibrated, len(x_clean), false_positives, rows))
    return DetectionRates(results)


@dataclass(frozen=True)
class GuardOutcome:
    """Adversarial examples judged against classifier and detectors together, each (N,) bool.

    Attributes:
        misclassified: The classifier's label is wrong.
        flagged: At least one detector flags the input.
    """

    misclassified: Tensor
    flagged: Tensor

    @property
    def evaded(self) -> Tensor:
        """Misclassified and not flagged: the attacker's success against the guarded model."""
        return self.misclassified & ~self.flagged

    @property
    def evasion_rate(self) -> float:
        """Share of the attacked points that are misclassified and undetected."""
        return float(self.evaded.float().mean()) if self.evaded.numel() else math.nan

    @property
    def detection_rate(self) -> float:
        """Share of the misclassified examples that are flagged (comparable to `detection_rates`)."""
        n = int(self.misclassified.sum())
        return int((self.misclassified & self.flagged).sum()) / n if n else math.nan


def guard_outcome(
    model: nn.Module, detectors: Sequence[CalibratedDetector], x_adv: Tensor, y: Tensor, *, batch_size: int = 256
) -> GuardOutcome:
    """Judge `x_adv` (true labels `y`) against the classifier and all `detectors` at once."""
    if len(x_adv) != len(y):
        raise InputError(f"x_adv holds {len(x_adv)} inputs but y {len(y)} labels")
    with attack_mode(model), torch.no_grad():
        chunks = [model(chunk).argmax(1) for chunk in torch.split(x_adv, batch_size)]
    predictions = torch.cat(chunks) if chunks else y.new_empty(0)
    flagged = torch.zeros(len(x_adv), dtype=torch.bool, device=x_adv.device)
    for d in detectors:
        flagged |= d.flags(score_batches(d.detector, model, x_adv, batch_size))
    return GuardOutcome(misclassified=(predictions != y.to(predictions.device)).to(flagged.device), flagged=flagged)


def fpr_warnings(section: dict[str, Any]) -> list[str]:
    """One warning per detector whose held-out false-positive rate misses its target beyond sampling error."""
    warnings = []
    for name, d in section["detectors"].items():
        check = d.get("clean_fpr_check") or {}
        if check.get("missed"):
            low, high = check["ci"]
            warnings.append(f"{name}: held-out false-positive rate {check['rate']:.1%} (95% CI {low:.1%}-{high:.1%}, "
                            f"{d['n_clean']} clean points) misses the {check['target']:.1%} target: the calibration "
                            "data differ from the held-out data, or are too few; calibrate on more, or on "
                            "data like the deployment's")
    return warnings
