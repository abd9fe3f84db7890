"""Validation of settings shared by the evaluation's configuration and its stages: one line per mistake."""

from __future__ import annotations

import math

from bastion.errors import InputError
from bastion.losses import LOSSES

__all__ = ["check_fraction", "check_int", "check_loss", "check_positive", "check_rel_step"]


def check_int(name: str, value: object, low: int) -> None:
    """An integer (not a bool) of at least `low`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def check_positive(name: str, value: object) -> None:
    """A finite number > 0."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be > 0, got {value!r}")


def check_fraction(name: str, value: object) -> None:
    """A number strictly between 0 and 1."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 < value < 1):
        raise InputError(f"{name} must lie in (0, 1), got {value!r}")


def check_rel_step(value: float | None) -> None:
    """PGD's step as a fraction of eps: None (the default schedule) or > 0."""
    if value is not None:
        check_positive("rel_step", value)


def check_loss(value: str) -> None:
    """A key of `bastion.losses.LOSSES`."""
    if value not in LOSSES:
        raise InputError(f"unknown loss {value!r}; choose one of: {', '.join(LOSSES)}")
