"""`torch.export` programs (`.pt2`) as models: the successor of TorchScript for shipping a network.

An `ExportedProgram` is a traced graph with its weights: it carries no Python code, so loading
one runs none (unlike a pickled module), and autograd runs through it, so every gradient attack
works on it as on the eager model it came from.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from bastion.errors import InputError

__all__ = ["ExportedModel", "is_exported_program", "load_exported"]

_HINT = (
    "export with a dynamic batch: torch.export.export(model, (x,), "
    "dynamic_shapes={'x': {0: torch.export.Dim('batch')}})"
)


class ExportedModel(nn.Module):
    """Runs the module of a `torch.export` program; `train()`/`eval()` only set the flag.

    An exported program is frozen in the mode it was traced in (dropout and batch-norm behave as
    they did then), and its graph module refuses `eval()`; this wrapper accepts the calls that
    `attack_mode` and `load_model` make, and turns a failed shape guard into a one-line error.

    Args:
        program: `torch.export.ExportedProgram`, usually from `torch.export.load`.
        source: Where it came from, for error messages.
    """

    def __init__(self, program: torch.export.ExportedProgram, source: str = "the exported program") -> None:
        super().__init__()
        self.program = program.module()
        self.source = source

    def train(self, mode: bool = True) -> ExportedModel:
        """Set the mode flag of this wrapper only: the traced graph keeps the mode it was exported in."""
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Run the program on `x` (B, C, H, W); its output goes through the same logits adapter as any model."""
        try:
            out: Tensor = self.program(x)
        except (AssertionError, RuntimeError) as error:  # a failed shape guard raises AssertionError
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if "guard" in first.lower():
                raise InputError(f"{self.source} was exported for other input shapes ({first}); {_HINT}") from None
            raise
        return out


def is_exported_program(path: Path) -> bool:
    """Whether `path` is an archive written by `torch.export.save` (by content, whatever its suffix)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        marker = next((n for n in archive.namelist() if n.split("/", 1)[-1] == "archive_format"), None)
        return marker is not None and archive.read(marker).strip() == b"pt2"


def load_exported(path: str | Path) -> ExportedModel:
    """Load a `.pt2` file written by `torch.export.save` as a model.

    Raises:
        InputError: If the file is missing or is not a readable exported program.

    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"exported program not found: {path}")
    try:
        program = torch.export.load(str(path))
    except (RuntimeError, ValueError, KeyError, OSError, zipfile.BadZipFile) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"cannot load {path} as a torch.export program: {first}") from None
    return ExportedModel(program, str(path))
