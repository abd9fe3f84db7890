"""`bastion list attacks|defenses|trainers|models|datasets`: what can be named on the command line."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the `list` subcommand."""
    parser = commands.add_parser("list", help="list attacks, defenses, training methods, zoo models or data sources")
    parser.add_argument("what", choices=["attacks", "defenses", "trainers", "models", "datasets"])
    parser.add_argument("--pattern", default="*", help="glob over names, e.g. 'pgd*'")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print one name per line with a one-line description."""
    if args.what in ("attacks", "defenses", "trainers"):
        for name, factory in _registered(args.what, args.pattern):
            doc = (factory.__doc__ or "").strip().splitlines()[0]
            print(f"{name:<14} {doc}")
    elif args.what == "models":
        from bastion.models import MODELS_HELP, ZOO

        for name, entry in sorted(ZOO.items()):
            print(f"zoo:{name:<16} {entry.description}\n{'':<20} rebuild: {entry.recipe}")
        for line in MODELS_HELP:
            print(line)
    else:
        from bastion.data import DATASETS_HELP

        for line in DATASETS_HELP:
            print(line)
    return 0


def _registered(what: str, pattern: str) -> list[tuple[str, Any]]:
    """(name, class) of the registered attacks (the Lp ones, then the spatial ones), defenses or trainers."""
    if what == "attacks":
        from bastion.attacks import ATTACKS
        from bastion.attacks.spatial import SPATIAL_ATTACKS

        return [(n, ATTACKS.get(n)) for n in ATTACKS.names(pattern)] + [
            (n, SPATIAL_ATTACKS.get(n)) for n in SPATIAL_ATTACKS.names(pattern)]
    if what == "defenses":
        from bastion.defenses import DEFENSES

        return [(n, DEFENSES.get(n)) for n in DEFENSES.names(pattern)]
    from bastion.train import TRAINERS

    return [(n, TRAINERS.get(n)) for n in TRAINERS.names(pattern)]
