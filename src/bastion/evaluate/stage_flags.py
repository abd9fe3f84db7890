"""The flags of every registered stage, by name: what the evaluate CLI, the TOML schema and `EvalConfig` read.

Importing this module registers every stage (`bastion.evaluate.stages`); each flag is declared once,
by the stage that owns it (`Stage.flags`, `bastion.evaluate.flags.Flag`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import bastion.evaluate.stages  # noqa: F401  (registers every stage)
from bastion.errors import InputError
from bastion.evaluate.flags import Flag
from bastion.evaluate.stage import STAGES

__all__ = ["all_flags", "check_flag_values", "flag_defaults", "flag_owners"]


def flag_owners() -> dict[str, str]:
    """Each flag's name -> the stage kind that owns it, over every registered stage (registration order).

    Raises:
        ValueError: When two stages declare the same flag (a programming error, caught by the contract test).
    """
    owners: dict[str, str] = {}
    for kind, flag in _declared():
        if flag.name in owners:
            raise ValueError(f"flag {flag.name!r} is declared by stages {owners[flag.name]!r} and {kind!r}")
        owners[flag.name] = kind
    return owners


def all_flags() -> dict[str, Flag]:
    """Every registered stage's flags by name, in registration order."""
    flag_owners()  # refuses duplicates
    return {flag.name: flag for _, flag in _declared()}


def flag_defaults() -> dict[str, Any]:
    """Each flag's default value."""
    return {name: flag.default for name, flag in all_flags().items()}


def check_flag_values(values: Mapping[str, Any], reserved: Iterable[str] = ()) -> dict[str, Any]:
    """The given flag values parsed and checked; an unknown name is refused in one line that lists the valid ones.

    Args:
        values: Flag name -> value (names with hyphens or underscores).
        reserved: Other names that are valid where the values came from (the run-level options), listed in
            the error message.
    """
    flags = all_flags()
    unknown = sorted(key for key in values if key.replace("-", "_") not in flags)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted({*flags, *reserved}))}")
    return {key.replace("-", "_"): flags[key.replace("-", "_")].value(raw) for key, raw in values.items()}


def _declared() -> list[tuple[str, Flag]]:
    """(stage kind, flag) for every flag of every registered stage, by kind."""
    return [(kind, flag) for kind in STAGES.names() for flag in getattr(STAGES.get(kind), "flags", ())]
