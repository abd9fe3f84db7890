"""What a `bastion train` output directory holds: its model card and its weights file.

The loader (`bastion.models.loading.load_model`) rebuilds a model from these; training (`bastion.train`)
writes them. Reading lives here, below training, so that loading a model never imports the trainer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bastion.errors import InputError

__all__ = ["CARD_NAME", "SAFETENSORS_NAME", "WEIGHTS_NAME", "read_card", "trained_weights"]

WEIGHTS_NAME, CARD_NAME = "model.pt", "model_card.json"
#: The same weights as model.pt, for tools outside PyTorch's pickle format (it cannot carry code).
SAFETENSORS_NAME = "model.safetensors"


def read_card(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The model card (model_card.json) of a training output directory."""
    path = Path(directory) / CARD_NAME
    if not path.is_file():
        raise InputError(f"{directory} is not a training output: it has no {CARD_NAME}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(card, dict) or not isinstance(card.get("model"), dict) or "spec" not in card["model"]:
        raise InputError(f"{path} does not say how to build the model (model.spec is missing)")
    return card


def trained_weights(directory: str | os.PathLike[str]) -> Path:
    """The weights file (a state dict) of a training output directory."""
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise InputError(f"{directory} has a model card but no {WEIGHTS_NAME}")
    return weights
