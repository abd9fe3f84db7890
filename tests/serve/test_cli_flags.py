"""The flags of issue 25 reach the settings, and --help says what they do."""

from __future__ import annotations

import argparse

from bastion.cli import _parser
from bastion.cli.serve import _overrides
from bastion.serve import load_config


def _serve() -> argparse.ArgumentParser:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["serve"]


def test_new_flags_reach_the_config() -> None:
    args = _serve().parse_args(["--on-drift", "reject", "--false-alarm", "0.05", "--keep-accepted", "500",
                                "--admin-key-file", "ADMIN", "--public-status", "--calibration", "npz:h.npz"])
    config = load_config(None, _overrides(args))
    assert (config.guard.on_drift, config.monitor.false_alarm, config.monitor.keep_accepted) == ("reject", 0.05, 500)
    assert (config.security.admin_key_file, config.security.public_status) == ("ADMIN", True)
    defaults = load_config(None, _overrides(_serve().parse_args([])))
    assert defaults.guard.calibration is None and defaults.guard.on_drift == "flag"
    assert defaults.guard.detectors == ("squeeze", "margin", "entropy") and not defaults.security.public_status
    helps = {a.dest: a.help or "" for a in _serve()._actions}
    assert "poison" in helps["keep_accepted"] and "any horizon" in helps["false_alarm"]
    assert "never the model's training data" in helps["calibration"] and "Retry-After" in helps["rate_limit"]
