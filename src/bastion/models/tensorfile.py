"""safetensors weight files: tensors only, by construction (a safetensors file cannot carry code)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO

import safetensors
import safetensors.torch
import torch

from bastion._io import write_atomic_with
from bastion.errors import InputError

__all__ = ["is_safetensors", "read_safetensors", "save_safetensors"]


def is_safetensors(path: str | Path) -> bool:
    """Whether `path` names a safetensors file (by its suffix, as the format's own tools do)."""
    return Path(path).suffix.lower() == ".safetensors"


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU.

    Raises:
        InputError: If the file cannot be parsed as safetensors.

    """
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot read {path} as safetensors: {first}") from None


def save_safetensors(state: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write a state dict as safetensors, atomically.

    Tensors are copied to contiguous CPU memory first: safetensors refuses tensors that share
    storage (tied weights), and a copy breaks the sharing; loading restores each key strictly.
    """
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    return write_atomic_with(path, write)
