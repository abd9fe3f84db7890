"""`bastion spatial`: accuracy under the worst rotation and translation within bounds (Engstrom et al., 2019)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bastion.cli.common import (
    add_data_options,
    add_model_options,
    check_out_dir,
    load_data_from_args,
    load_model_from_args,
    require,
)
from bastion.cli.resumable import add_resume_options, run_resumable

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    """Add the `spatial` subcommand."""
    parser = commands.add_parser(
        "spatial",
        help="accuracy under the worst rotation and translation",
        description="Engstrom et al.'s spatial attack (ICML 2019): each point's worst rotation and translation "
        "within the bounds, by grid search and by first-order steps on (angle, tx, ty); accuracy under each and "
        "under the per-point worst of both. Writes spatial.json to --out; --resume continues an interrupted run.",
    )
    add_model_options(parser)
    add_data_options(parser)
    group = parser.add_argument_group("transformations")
    group.add_argument("--max-angle", type=float, default=30.0, help="largest rotation in degrees (default 30)")
    group.add_argument("--max-translation", type=float, default=3.0, help="largest shift per axis in pixels (3)")
    group.add_argument("--angles", type=int, default=31, help="grid values of the angle (default 31)")
    group.add_argument("--translations", type=int, default=5, help="grid values of each shift (default 5)")
    group.add_argument("--steps", type=int, default=50, help="first-order steps (default 50)")
    group.add_argument("--restarts", type=int, default=1, help="first-order random restarts (default 1)")
    parser.add_argument("--out", default="runs/spatial", help="output directory (default runs/spatial)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first-order random starts (default 0)")
    add_resume_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Clean accuracy, then both methods on every point, as stages (--resume continues them); write spatial.json."""
    require(args, "model", "data")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    from bastion.evaluate.commands import spatial_suite

    bounds = {"max_angle": args.max_angle, "max_translation": args.max_translation}
    stages = spatial_suite(**bounds, angles=args.angles, translations=args.translations, steps=args.steps,
                           restarts=args.restarts)  # refuses bad settings before any work
    return run_resumable(args, "spatial", "spatial.json", lambda main: _run(args, stages, bounds, main))


def _run(args: argparse.Namespace, stages: list[Any], bounds: dict[str, float], main: bool) -> int:
    from bastion._io import write_atomic
    from bastion.attacks.spatial import SpatialBounds
    from bastion.evaluate.command_reports import spatial_report
    from bastion.evaluate.commands import run_suite

    model = load_model_from_args(args).module
    data = load_data_from_args(args)
    run = run_suite(stages, model, data, seed=args.seed, batch_size=args.batch_size or 256, out=args.out,
                    resume=args.resume)
    if not main:
        return 0
    report = spatial_report(run.ctx, model=args.model, **bounds)
    path = write_atomic(Path(args.out) / "spatial.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    run.finish()
    print(f"{args.model} on {data.name} ({len(data)} points), {SpatialBounds(**bounds).describe()}")
    seconds = report["seconds"]
    for name, accuracy in report["accuracy"].items():
        print(f"  {name:<12} {accuracy:.1%}" + (f"  ({seconds[name]:.1f} s)" if name in seconds else ""))
    print(f"\nwrote: {path}")
    return 0
