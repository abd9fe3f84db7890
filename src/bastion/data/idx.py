"""A small reader for the IDX format of MNIST (LeCun, Cortes and Burges, http://yann.lecun.com/exdb/mnist/).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order. The published files are gzipped.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from bastion.errors import InputError

__all__ = ["parse_idx", "read_idx"]

# Type code -> big-endian numpy dtype, from the format's description on the MNIST page.
_TYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode the bytes of an IDX file, gzipped or not.

    Args:
        data: The file's contents.
        source: What to call the data in error messages (usually its path).

    Returns:
        An array of the file's shape in native byte order (uint8 for MNIST), writable and owned.

    Raises:
        InputError: If the data is not a well-formed IDX file (bad gzip stream, magic number,
            type code, or a length that does not match the dimensions).

    """
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{source} is not a valid gzip file: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise InputError(f"{source} is not an IDX file (bad magic number {data[:4].hex() or 'none'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise InputError(f"{source} has a truncated IDX header ({ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_TYPES[data[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise InputError(
            f"{source} holds {len(data) - header} bytes of values but its dimensions {dims} need {expected}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header)
    # astype copies: the result is writable, owned and in native byte order.
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (such as `t10k-images-idx3-ubyte.gz`), gzipped or not.

    Args:
        path: The file to read.

    Returns:
        An array of the file's shape, e.g. (10000, 28, 28) uint8 for MNIST test images.

    Raises:
        InputError: If the file is missing or not a well-formed IDX file.

    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"data file not found: {file}")
    return parse_idx(file.read_bytes(), str(file))
