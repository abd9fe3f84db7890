"""Weights into a built model: a state dict from `.safetensors` or a torch checkpoint, fitted strictly.

A checkpoint is read with `torch.load(weights_only=True)` (`bastion.models.weightsfile`): it holds
tensors, and loading one must never run code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from bastion.errors import InputError
from bastion.models.tensorfile import is_safetensors, read_safetensors
from bastion.models.weightsfile import read_checkpoint

__all__ = ["load_weights"]

_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict (a `.safetensors` file, or a torch checkpoint holding one) into `model`, strictly."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    checkpoint = read_safetensors(path) if is_safetensors(path) else read_checkpoint(path)
    problems = _check_fit(model, _state_dict_of(checkpoint, str(path)))
    if problems:
        raise InputError(f"the weights in {path} do not fit the model: {problems}")
    return model


def _state_dict_of(checkpoint: object, source: str) -> Mapping[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping):
        for key in _STATE_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return _state_dict_of(checkpoint[key], source)
        if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return {str(k).removeprefix("module."): v for k, v in checkpoint.items()}
    raise InputError(f"{source} holds no state dict (expected a dict of tensors, or one under {_STATE_KEYS})")


def _check_fit(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """What keeps `state` from fitting `model` ("" when it fits, and then it is loaded)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if names:
            more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
            problems.append(f"{label}: {', '.join(names[:3])}{more}")
    if not problems:
        model.load_state_dict(state, strict=True)
    return "; ".join(problems)
