"""Defense specs from the command line: `name:key=value,key=value`, e.g. `jpeg:quality=75`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from bastion.defenses.base import DEFENSES, Defended, Defense
from bastion.errors import InputError

__all__ = ["apply_defenses", "build_defense", "parse_spec"]


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.lower()
    return {"true": True, "false": False, "none": None}.get(lowered, text)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split `name:key=value,...` into the name and its options (numbers and true/false converted)."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"bad defense option {item!r} in {spec!r}; write name:key=value,key=value")
        options[key.strip().replace("-", "_")] = _value(value.strip())
    if not name:
        raise InputError(f"no defense name in {spec!r}; choose one of: {', '.join(DEFENSES.names())}")
    return name, options


def build_defense(spec: str) -> Defense:
    """The defense a spec names, validated (unknown names, options and bad values raise `InputError`)."""
    name, options = parse_spec(spec)
    try:
        return DEFENSES.create(name, **options)
    except TypeError as error:
        raise InputError(f"bad options for defense {name!r}: {error}") from None


def apply_defenses(model: nn.Module, specs: Sequence[str]) -> nn.Module:
    """`model` behind the defenses the specs name, in order; the model itself when there are none."""
    return Defended([build_defense(s) for s in specs], model) if specs else model
