"""Flags owned by stages: one declaration gives a stage its `bastion evaluate` flag, its TOML key and its check.

A stage declares the flags it owns in `Stage.flags` and maps their values onto its settings in
`Stage.from_flags`; the evaluate CLI and the TOML schema are generated from the stage registry
(`bastion.evaluate.stage_flags`), so adding a stage with a flag touches that stage's module and its
registration only.
Another stage may read a flag it does not own by name (the curve reads `steps`, which the attack
stage owns); a flag has one owner, one default and one check.

A flag's name is its TOML key (`curve_points`) and, with hyphens, its CLI flag (`--curve-points`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.errors import InputError

__all__ = ["Flag", "closed_unit", "open_unit", "positive"]


@dataclass(frozen=True)
class Flag:
    """One setting a stage owns, as a CLI flag and a TOML key.

    Args:
        name: TOML key, and with hyphens the CLI flag (`curve_points` -> `--curve-points`).
        default: The value when neither the CLI nor the TOML file gives one.
        help: The flag's line in `bastion evaluate --help` (the default is appended).
        type: The value's type: int, float, str, bool (a switch, or `--no-NAME` when it defaults to on),
            list (repeatable, comma-separated on the CLI) or dict (TOML only: no CLI flag).
        minimum: The smallest int accepted (ints only).
        check: Whether a (parsed) value is acceptable, with `expects` saying what is (e.g. "lie in (0, 1)").
        expects: The end of the error message when `check` fails: "NAME must EXPECTS, got VALUE".
        parse: Turns a CLI or TOML string into the value (e.g. "8/255" -> 0.0314); None takes `type`.
        choices: The accepted values, or a function listing them (a registry's names); empty: any.
        metavar: The CLI's placeholder for the value.
    """

    name: str
    default: Any
    help: str
    type: type = str
    minimum: int | None = None
    check: Callable[[Any], bool] | None = None
    expects: str = ""
    parse: Callable[[Any], Any] | None = None
    choices: Sequence[str] | Callable[[], Sequence[str]] = ()
    metavar: str | None = None

    @property
    def cli(self) -> str:
        """The command-line flag."""
        return "--" + self.name.replace("_", "-")

    def options(self) -> list[str]:
        """The accepted values (empty when any value of the type is)."""
        return list(self.choices() if callable(self.choices) else self.choices)

    def value(self, raw: Any) -> Any:
        """`raw` (from the CLI, a TOML file or Python) parsed and checked; raises `InputError` naming the flag."""
        if raw is None:
            if self.default is not None:
                raise InputError(f"{self.name} needs a value (default {self.default!r})")
            return None
        value = self.parse(raw) if self.parse is not None and isinstance(raw, str) else raw
        value = self._typed(value)
        choices = self.options()
        if choices and value not in choices:
            raise InputError(f"unknown {self.name} {value!r}; choose one of: {', '.join(choices)}")
        if self.check is not None and not self.check(value):
            raise InputError(f"{self.name} must {self.expects}, got {value!r}")
        return value

    def _typed(self, value: Any) -> Any:
        kind = self.type
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or (self.minimum is not None
                                                                         and value < self.minimum):
                low = f" >= {self.minimum}" if self.minimum is not None else ""
                raise InputError(f"{self.name} must be an integer{low}, got {value!r}")
            return value
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{self.name} must be a finite number, got {value!r}")
            return float(value)
        if kind is bool:
            if not isinstance(value, bool):
                raise InputError(f"{self.name} must be true or false, got {value!r}")
            return value
        if kind is list:
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
                raise InputError(f"{self.name} takes a list of names, got {value!r}")
            return [v.strip() for v in items]
        if kind is dict:
            if not isinstance(value, Mapping):
                raise InputError(f"{self.name} must be a table of settings, got {value!r}")
            return dict(value)
        if not isinstance(value, str):
            raise InputError(f"{self.name} must be a string, got {value!r}")
        return value


def positive(value: float) -> bool:
    """A flag check: > 0."""
    return value > 0


def open_unit(value: float) -> bool:
    """A flag check: in (0, 1)."""
    return 0 < value < 1


def closed_unit(value: float) -> bool:
    """A flag check: in [0, 1]."""
    return 0 <= value <= 1
