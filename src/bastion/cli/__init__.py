"""The `bastion` command: one entry point, one small module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bastion.errors import InputError

__all__ = ["DISTRIBUTED_COMMANDS", "main"]

# The subcommands that share their work among torchrun's processes; the others refuse to run under it.
DISTRIBUTED_COMMANDS = frozenset({"certify", "evaluate", "spatial", "train"})
# The subcommands that build their parser from a registry when run: command -> (module, function of argv).
_SELF_PARSED = {"attack": ("bastion.cli.attack", "run_attack_command"),
                "evaluate": ("bastion.cli.evaluate", "run_evaluate_command")}


def _parser() -> argparse.ArgumentParser:
    from bastion import __version__
    from bastion.cli import attack, certify, evaluate, history, listing, train
    from bastion.cli import corruptions as corruptions_cli
    from bastion.cli import detect as detect_cli
    from bastion.cli import patch as patch_cli
    from bastion.cli import requests as requests_cli
    from bastion.cli import serve as serve_cli
    from bastion.cli import spatial as spatial_cli
    from bastion.cli import universal as universal_cli

    parser = argparse.ArgumentParser(
        prog="bastion", description="Attack, defend, certify and evaluate the adversarial robustness of PyTorch models."
    )
    parser.add_argument("--version", action="version", version=f"bastion {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    evaluate.register(commands)
    attack.register(commands)
    listing.register(commands)
    train.register(commands)
    certify.register(commands)
    history.register(commands)
    patch_cli.register(commands)
    corruptions_cli.register(commands)
    spatial_cli.register(commands)
    detect_cli.register(commands)
    universal_cli.register(commands)
    serve_cli.register(commands)
    requests_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line and exit 2, without a traceback."""
    logging.basicConfig(format="bastion: %(levelname)s: %(message)s", level=logging.WARNING)
    logging.getLogger("bastion.progress").setLevel(logging.INFO)  # stage lines, and lines for a bar off a terminal
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # Parsed before anything heavy loads: `bastion --help` and usage errors import no torch. The
        # commands whose flags come from a registry (an attack's, the stages') parse their own.
        namespace = None if args and args[0] in _SELF_PARSED else _parser().parse_args(args)
        from bastion.exiting import clean_exit

        with clean_exit():  # the process group and helper threads are gone before the process exits
            if namespace is None:
                _refuse_under_torchrun(args[0])
                module, function = _SELF_PARSED[args[0]]
                return int(getattr(importlib.import_module(module), function)(args[1:]))
            _refuse_under_torchrun(namespace.command)
            code: int = namespace.handler(namespace)
            return code
    except InputError as error:
        if os.environ.get("BASTION_DEBUG"):
            raise
        print(f"bastion: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bastion: interrupted", file=sys.stderr)
        return 130


def _refuse_under_torchrun(command: str) -> None:
    """One clear line instead of N processes each running the whole command and writing the same files."""
    from bastion.distributed import launched

    size = launched()
    if size > 1 and command not in DISTRIBUTED_COMMANDS:
        raise InputError(f"bastion {command} does not share its work among processes yet, and torchrun started "
                         f"{size} (WORLD_SIZE={size}): run it without torchrun (or with --nproc-per-node 1); "
                         f"under torchrun: bastion {' or '.join(sorted(DISTRIBUTED_COMMANDS))}")
