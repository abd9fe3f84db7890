"""`bastion list attacks|models|datasets`: what can be named on the command line."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the `list` subcommand."""
    parser = commands.add_parser("list", help="list attacks, training methods, zoo models or data sources")
    parser.add_argument("what", choices=["attacks", "trainers", "models", "datasets"])
    parser.add_argument("--pattern", default="*", help="glob over names, e.g. 'pgd*'")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print one name per line with a one-line description."""
    if args.what == "attacks":
        from bastion.attacks import ATTACKS

        for name in ATTACKS.names(args.pattern):
            doc = (ATTACKS.get(name).__doc__ or "").strip().splitlines()[0]
            print(f"{name:<12} {doc}")
    elif args.what == "trainers":
        from bastion.train import TRAINERS

        for name in TRAINERS.names(args.pattern):
            doc = (TRAINERS.get(name).__doc__ or "").strip().splitlines()[0]
            print(f"{name:<12} {doc}")
    elif args.what == "models":
        from bastion.models import ZOO

        for name, entry in sorted(ZOO.items()):
            print(f"zoo:{name:<16} {entry.description}")
    else:
        from bastion.data import DATASETS_HELP

        for line in DATASETS_HELP:
            print(line)
    return 0
