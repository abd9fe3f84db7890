"""`torch.export` programs (`.pt2`) as models: the successor of TorchScript for shipping a network.

An `ExportedProgram` is a traced graph with its weights: it carries no Python code, so loading
one runs none (unlike a pickled module), and autograd runs through it, so every gradient attack
works on it as on the eager model it came from.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bastion.errors import InputError

__all__ = ["ExportedModel", "fixed_batch", "is_exported_program", "load_exported"]

logger = logging.getLogger(__name__)

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
        self.fixed_batch = fixed_batch(program)
        self._warned = False

    def train(self, mode: bool = True) -> ExportedModel:
        """Set the mode flag of this wrapper only: the traced graph keeps the mode it was exported in."""
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Any:
        """Run the program on `x` (B, C, H, W); its output goes through the same logits adapter as any model.

        A program exported with a fixed batch size runs on chunks of that size, the last one padded
        by repeating its final row; the padded rows' outputs are dropped (rows do not interact in an
        exported inference graph, so the kept outputs, and their gradients, are those of `x`).
        """
        size = self.fixed_batch
        if size is None or len(x) == size:
            return self._run(x)
        if not self._warned:
            self._warned = True
            logger.warning("%s was exported for a fixed batch of %d: running it in chunks of %d, the last one padded",
                           self.source, size, size)
        return _joined([self._run(chunk) for chunk in _chunks(x, size)], len(x))

    def _run(self, x: Tensor) -> Any:
        try:
            out = self.program(x)
        except (AssertionError, RuntimeError) as error:  # a failed shape guard raises AssertionError
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if "guard" in first.lower():
                raise InputError(f"{self.source} was exported for other input shapes ({first}); {_HINT}") from None
            raise
        return out


def fixed_batch(program: torch.export.ExportedProgram) -> int | None:
    """The batch size a program was exported for, or None for a dynamic batch (or an input that is not a tensor)."""
    users = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in users:
            value = node.meta.get("val")
            shape = getattr(value, "shape", None)
            return shape[0] if shape and isinstance(shape[0], int) else None
    return None


def _chunks(x: Tensor, size: int) -> list[Tensor]:
    """Split along the batch into chunks of exactly `size`, padding the last by repeating its final row."""
    chunks = [x[i : i + size] for i in range(0, len(x), size)]
    short = size - len(chunks[-1])
    if short:
        chunks[-1] = torch.cat([chunks[-1], chunks[-1][-1:].expand(short, *x.shape[1:])])
    return chunks


def _joined(parts: list[Any], n: int) -> Any:
    """The chunks' outputs (tensors, or dicts, tuples and lists of them) joined along the batch, cut to `n` rows."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts)[:n]
    if isinstance(first, dict):
        return {key: _joined([part[key] for part in parts], n) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_joined([part[i] for part in parts], n) for i in range(len(first)))
    return first


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
