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

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    """Add the `spatial` subcommand."""
    parser = commands.add_parser(
        "spatial",
        help="accuracy under the worst rotation and translation",
        description="Engstrom et al.'s spatial attack (ICML 2019): each point's worst rotation and translation "
        "within the bounds, by grid search and by first-order steps on (angle, tx, ty); accuracy under each and "
        "under the per-point worst of both. Writes spatial.json to --out.",
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Attack every point with both methods, print the accuracies, write spatial.json."""
    import torch

    from bastion._io import write_atomic
    from bastion.attacks.spatial import SpatialBounds, SpatialGrid, SpatialPGD
    from bastion.models import model_device_dtype

    require(args, "model", "data")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    model = load_model_from_args(args).module
    device, dtype = model_device_dtype(model)
    data = load_data_from_args(args)
    bounds = SpatialBounds(args.max_angle, args.max_translation)
    attacks = {"grid": SpatialGrid(angles=args.angles, translations=args.translations),
               "first-order": SpatialPGD(steps=args.steps, restarts=args.restarts)}
    generator = torch.Generator().manual_seed(args.seed)
    correct = {"clean": 0, "grid": 0, "first-order": 0, "worst case": 0}
    seconds = {"grid": 0.0, "first-order": 0.0}
    for _, x, y in data.batches(args.batch_size or 256, device=device, dtype=dtype):
        with torch.no_grad():
            correct["clean"] += int((model(x).argmax(1) == y).sum())
        results = {name: attack(model, x, y, bounds, generator=generator) for name, attack in attacks.items()}
        for name, result in results.items():
            correct[name] += int((~result.success).sum())
            seconds[name] += result.seconds
        correct["worst case"] += int((~results["grid"].success & ~results["first-order"].success).sum())
    n = max(len(data), 1)
    report = {"kind": "spatial", "model": args.model, "data": data.name, "n": len(data),
              "bounds": {"max_angle": args.max_angle, "max_translation": args.max_translation},
              "accuracy": {k: v / n for k, v in correct.items()}, "seconds": seconds,
              "settings": {name: attack.settings() for name, attack in attacks.items()}, "seed": args.seed}
    path = write_atomic(Path(args.out) / "spatial.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(f"{args.model} on {data.name} ({len(data)} points), {bounds.describe()}")
    for name, accuracy in report["accuracy"].items():
        print(f"  {name:<12} {accuracy:.1%}" + (f"  ({seconds[name]:.1f} s)" if name in seconds else ""))
    print(f"\nwrote: {path}")
    return 0
