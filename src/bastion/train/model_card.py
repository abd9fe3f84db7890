"""The model card of a `bastion train` run: what was trained, from what, on which data, how, and how well.

The card is the JSON `bastion evaluate --model OUT` and `bastion history` read back (written by
`bastion.train.card.write_card`); its fields follow Mitchell et al.'s model cards (FAT* 2019,
arXiv:1810.03993) where a training run can fill them: model details, training data, evaluation
data and metrics, and caveats (the warnings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bastion.data import ImageSet
from bastion.models import Normalized
from bastion.models.loading import fingerprint_model
from bastion.threat import ThreatModel
from bastion.train.card import outcome_warnings
from bastion.train.checkpoint import read_card
from bastion.train.config import FitConfig
from bastion.train.loop import FitResult

__all__ = ["HeldOutCheck", "base_spec", "model_card"]


@dataclass(frozen=True)
class HeldOutCheck:
    """The card's held-out accuracy: clean, and under PGD with `steps` and `restarts` (None without a threat model)."""

    clean: float
    robust: float | None
    steps: int
    restarts: int
    seconds: float


def base_spec(spec: str) -> str:
    """The spec that rebuilds the architecture: a trained directory is replaced by the spec in its card."""
    return str(read_card(spec)["model"]["spec"]) if Path(spec).is_dir() else spec


def _buffer(model: nn.Module, name: str) -> list[float] | None:
    if not isinstance(model, Normalized):
        return None
    values: list[float] = model.get_buffer(name).flatten().tolist()
    return values


def model_card(*, method: str, trainer: dict[str, Any], adversarial: bool, config: FitConfig,
               threat: ThreatModel | None, model: nn.Module, spec: str, initial_weights: str | None, train: ImageSet,
               val: ImageSet, held_out: ImageSet, check: HeldOutCheck, result: FitResult,
               command: str) -> dict[str, Any]:
    """The card's fields.

    Args:
        method: The training method's registry name.
        trainer: Its settings.
        adversarial: Whether the method trains against an attack (its outcome warnings differ).
        config: The training loop's settings.
        threat: The training threat model, None for a method without one.
        model: The trained model (a `Normalized` wrapper records its mean and std).
        spec: The --model spec it was built from.
        initial_weights: The --weights it started from.
        train: The training set.
        val: The held-out set; `held_out` the part of it the card's accuracy is measured on.
        held_out: See `val`.
        check: That accuracy.
        result: What the training loop returned.
        command: The command line.
    """
    raw = model.model if isinstance(model, Normalized) else model
    described = threat.describe() if threat else None
    return {
        "method": method,
        "trainer": trainer,
        "hyperparameters": {**dict(vars(config).items()), "threat": described},
        "model": {"spec": base_spec(spec), "architecture": type(raw).__name__,
                  "mean": _buffer(model, "mean"), "std": _buffer(model, "std"), "fingerprint": fingerprint_model(raw),
                  "initial_weights": initial_weights},
        "data": {"name": train.name, "n": len(train), "fingerprint": train.fingerprint,
                 "held_out": {"name": val.name, "n": len(held_out), "fingerprint": held_out.fingerprint}},
        "metrics": {"clean_accuracy": check.clean, "pgd_accuracy": check.robust,
                    "pgd": {"steps": check.steps, "restarts": check.restarts, "threat": described},
                    "selected_epoch": result.selected_epoch, "train_seconds": round(result.seconds, 2),
                    "eval_seconds": round(check.seconds, 2)},
        "wall_time_s": round(result.seconds, 2),
        "warnings": result.warnings + outcome_warnings(check.clean, check.robust, result.history, train.num_classes,
                                                       adversarial=adversarial),
        "history": result.history,
        "command": command,
    }
