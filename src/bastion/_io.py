"""File writing that never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["remove_temporaries", "save_torch_atomic", "write_atomic", "write_atomic_with"]


def write_atomic_with(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write` on a temporary file in the same folder, then rename it over `path`.

    Readers see the old file or the new one, never a partial write; the parent folder is created,
    and the temporary file is removed if `write` fails.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; reports and checkpoints are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def remove_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer left in `directory` (`.NAME.XXXXXXXX.tmp`); returns them.

    `write_atomic_with` removes its temporary file on any exception, but not on SIGKILL or power
    loss; a run that takes over an output folder (a fresh start or --resume) calls this first.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    left = [p for p in folder.glob(".*.tmp") if p.is_file() and p.name.count(".") >= 3]
    for path in left:
        path.unlink(missing_ok=True)
    return left


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    data = text.encode("utf-8")

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    return write_atomic_with(path, write)


def save_torch_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """`torch.save` `obj` to `path` atomically: never half a checkpoint or state file."""
    return write_atomic_with(path, lambda handle: torch.save(obj, handle))
