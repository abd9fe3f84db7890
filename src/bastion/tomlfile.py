"""Read a TOML file for any command's `--config`, with one-line errors for a missing or malformed file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bastion.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["read_toml_document"]


def read_toml_document(path: str | Path) -> dict[str, Any]:
    """The whole TOML document at `path`; `InputError` names the file and the problem."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"config file not found: {file}")
    try:
        document: dict[str, Any] = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"cannot parse {file}: {error}") from None
    return document
