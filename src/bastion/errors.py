"""The error a user sees as one line: bad input, not a bug in bastion."""

from __future__ import annotations


class InputError(ValueError):
    """Invalid input from the user (a file, a name, a value): the CLI prints it as one line and exits non-zero."""
