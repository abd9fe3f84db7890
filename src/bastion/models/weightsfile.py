"""Torch checkpoints read as tensors only: `torch.load(weights_only=True)`, every failure said in one line.

A file that torch.save did not write (text, random bytes, another archive) is told apart from a
real checkpoint that holds objects other than tensors (a pickled module, numpy arrays, functions):
the first is "not a torch checkpoint", the second says what to save instead.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from bastion.errors import InputError
from bastion.models.factory import one_line

__all__ = ["read_checkpoint"]

#: The pickled magic number that opens a checkpoint of torch.save's legacy (pre-1.6, non-zip) format.
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"


def read_checkpoint(path: Path) -> Any:
    """`torch.load(weights_only=True)`, with every way a file can fail to be a state dict said in one line."""
    if path.stat().st_size == 0:
        raise InputError(f"cannot read weights {path}: the file is empty")
    if not _is_torch_checkpoint(path):
        raise InputError(f"{path} is not a torch checkpoint: not a file written by torch.save ({_looks_like(path)}); "
                         "give a state dict saved with torch.save(model.state_dict(), PATH), or a .safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Module" in str(error) or "torch.nn" in str(error):
            raise InputError(f"{path} holds a whole pickled model (nn.Module), which bastion never unpickles (that "
                             "could run code): save its weights instead, torch.save(model.state_dict(), PATH), and "
                             "give --model module:factory --weights PATH; or export the model, "
                             "torch.export.save(torch.export.export(model, (x,)), 'model.pt2'), and give that file "
                             "as --model") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        reason = f"it refers to {found.group(1)}" if found else "it holds content that is not tensors"
        raise InputError(f"{path} is a torch checkpoint holding objects other than tensors, refused by weights_only "
                         f"loading ({reason}). Save a state dict: torch.save(model.state_dict(), PATH)") from None
    except (RuntimeError, OSError) as error:
        raise InputError(f"cannot read weights {path}: {one_line(error)}") from None
    except Exception:  # torch's unpickler fails in many ways on a file that is not its own
        raise InputError(f"cannot read weights {path}: not a file written by torch.save") from None


def _is_torch_checkpoint(path: Path) -> bool:
    """Whether `path` is in a format torch.save writes: a zip archive with a data.pkl, or the legacy magic number."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    with path.open("rb") as handle:
        return handle.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC


def _looks_like(path: Path) -> str:
    """What a file that is not a checkpoint seems to hold, for the message."""
    if zipfile.is_zipfile(path):
        return "a zip archive without torch's data.pkl"
    with path.open("rb") as handle:
        head = handle.read(512)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "its bytes are in no format torch reads"
    return "it holds text"
