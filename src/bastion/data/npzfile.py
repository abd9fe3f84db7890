"""Reading a `.npz` archive safely: every way a file can fail to be one is one line, never numpy's advice.

numpy's `load` falls back to unpickling for a file that is neither an npz (zip) nor an npy file,
and its refusal suggests `allow_pickle=True`, which would run code from the file: that advice is
never passed on. A truncated or damaged archive surfaces as `zipfile.BadZipFile` or `zlib.error`,
at opening or when a member is read; both become one-line errors.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bastion.errors import InputError

__all__ = ["damaged_npz", "open_npz"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
_NPY_MAGIC = b"\x93NUMPY"
_WRITE = "write one with numpy.savez(PATH, x=images, y=labels)"


def open_npz(path: Path, shown: str) -> np.lib.npyio.NpzFile:
    """Open `path` as an npz archive of arrays, without ever unpickling.

    Args:
        path: The file.
        shown: How the user named it, for the messages.

    Raises:
        InputError: The file is not an npz archive (random bytes, a single .npy array, text), or is
            truncated or damaged.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(6)
    except OSError as error:
        raise InputError(f"cannot read {shown}: {error.strerror or error}") from None
    if head.startswith(_NPY_MAGIC):
        raise InputError(f"{shown} is a single .npy array, not a .npz archive of named arrays; {_WRITE}")
    if not head.startswith(_ZIP_MAGIC):
        raise InputError(f"{shown} is not a valid .npz archive of arrays; {_WRITE}")
    with damaged_npz(shown):
        archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError(f"{shown} is not a valid .npz archive of arrays; {_WRITE}")
    return archive


@contextmanager
def damaged_npz(shown: str) -> Iterator[None]:
    """Turn the errors of a truncated or damaged archive (opened or read) into one line."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise InputError(f"{shown} is not a valid .npz archive of arrays: truncated or damaged ({detail})") from None
