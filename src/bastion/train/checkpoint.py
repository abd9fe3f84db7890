"""Training checkpoints written atomically and read back (the model card itself is `bastion.models.trained`)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from bastion._io import save_torch_atomic
from bastion.errors import InputError
from bastion.models.trained import CARD_NAME, SAFETENSORS_NAME, WEIGHTS_NAME, read_card

__all__ = ["CARD_NAME", "CHECKPOINT_NAME", "SAFETENSORS_NAME", "WEIGHTS_NAME", "check_same_settings", "load_checkpoint",
           "plain_settings", "read_card", "save_atomic"]

CHECKPOINT_NAME = "checkpoint.pt"


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
