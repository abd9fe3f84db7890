"""A commented TOML file of every evaluation option, generated from `EvalConfig` and the stages' flags.

`bastion evaluate --print-config > eval.toml` writes it: the run-level options under `[evaluate]`, then
each stage's flags under a comment naming the stage, each with its help and its default (an option
without a default is commented out). Read back with `--config`, it gives the defaults.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from bastion.evaluate.config import EvalConfig
from bastion.evaluate.stage_flags import all_flags, flag_owners

__all__ = ["config_template"]

#: Run-level options that a file should not carry by default (they name a machine, or are not set in a file).
_LEFT_OUT = ("options", "stages")


def config_template(model: str = "zoo:mnist-cnn", data: str = "mnist-sample") -> str:
    """The TOML text: `[evaluate]` with every option at its default, grouped by the stage that owns it."""
    defaults = EvalConfig(model=model, data=data)
    lines = ["# bastion evaluate --config FILE: every option at its default (flags on the command line win).",
             "[evaluate]"]
    for field in dataclasses.fields(EvalConfig):
        if field.name not in _LEFT_OUT:
            lines.append(_line(field.name, getattr(defaults, field.name)))
    flags, owners = all_flags(), flag_owners()
    for kind in dict.fromkeys(owners.values()):
        lines += ["", f"# stage {kind}"]
        for name, flag in flags.items():
            if owners[name] == kind:
                lines += [f"# {flag.help}", _line(name, flag.default)]
    lines += ["", "# One stage's settings by its name in the suite, over everything above, e.g.:",
              "# [stages.pgd]", "# steps = 40"]
    return "\n".join(lines) + "\n"


def _line(name: str, value: Any) -> str:
    if value is None or value == ():
        return f"# {name} ="
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_value(v)}" for k, v in value.items())
        return f"{name} = {{{inner}}}"
    return f"{name} = {_value(value)}"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # strings and lists of strings: TOML's basic strings and arrays
