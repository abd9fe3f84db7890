"""Training checkpoints written atomically, and trained output directories loaded back as models."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion._io import save_torch_atomic
from bastion.errors import InputError

__all__ = ["CARD_NAME", "CHECKPOINT_NAME", "WEIGHTS_NAME", "check_same_settings", "load_checkpoint", "load_trained",
           "plain_settings", "save_atomic"]

CHECKPOINT_NAME, WEIGHTS_NAME, CARD_NAME = "checkpoint.pt", "model.pt", "model_card.json"


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """`torch.save` to a temporary file in the same folder, then `os.replace`: never half a checkpoint."""
    return save_torch_atomic(obj, path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by `bastion train` (tensors and plain values only: `weights_only=True`)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"no checkpoint to resume from: {file} does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise InputError(f"cannot read checkpoint {file}: {str(error).strip().splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("format") != 1:
        raise InputError(f"{file} is not a bastion training checkpoint")
    return state


def plain_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as checkpoint-safe plain values (read back with weights_only): anything else becomes its repr."""
    return {k: v if v is None or isinstance(v, (bool, int, float, str)) else repr(v) for k, v in settings.items()}


def check_same_settings(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint under other settings, naming each one that changed (old -> new).

    Args:
        saved: The checkpoint (its `config`, `trainer` and `threat` entries; older checkpoints lack some).
        now: This run's loop config, trainer settings and "eps/norm".
    """
    before = {**saved.get("config", {}), **saved.get("trainer", {}), "eps/norm": saved.get("threat", now["eps/norm"])}
    changed = [f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(now) | set(before))
               if before.get(k, now.get(k)) != now.get(k)]
    if changed:
        raise InputError(f"cannot resume with other settings than the checkpoint's: {', '.join(changed)} "
                         "(give the same settings, or start afresh with --overwrite)")


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


def load_trained(directory: str | os.PathLike[str]) -> nn.Module:
    """Rebuild the model a `bastion train` run wrote: architecture from the card, weights from model.pt.

    The card's `model.spec` rebuilds the architecture and `model.pt` (a state dict) gives the
    weights; the normalization used in training (`model.mean`, `model.std`) is put back in front.
    """
    from bastion.models.loading import load_model, load_weights
    from bastion.models.normalize import Normalized

    card = read_card(directory)
    spec = card["model"]["spec"]
    if Path(spec).is_dir():
        raise InputError(f"{directory}: its model spec {spec!r} is itself a directory")
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise InputError(f"{directory} has a model card but no {WEIGHTS_NAME}")
    model = load_model(spec, device="cpu").module
    load_weights(model, weights)
    mean, std = card["model"].get("mean"), card["model"].get("std")
    return Normalized(model, mean, std).eval() if mean is not None and std is not None else model.eval()
