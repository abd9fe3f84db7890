"""`bastion certify`: randomized-smoothing certificates for a model and data, as TSV, JSON and HTML."""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.cli.common import add_model_options, check_out_dir, load_model_from_args, require
from bastion.cli.history_options import add_history_options, prepare_history
from bastion.errors import InputError

if TYPE_CHECKING:
    from bastion.distributed import World

__all__ = ["register", "run"]

_COLUMNS = ("index", "label", "prediction", "radius", "correct", "p_lower", "count", "seconds")


def register(commands: Any) -> None:
    """Add the `certify` subcommand."""
    parser = commands.add_parser(
        "certify",
        help="certify L2 robustness by randomized smoothing",
        description="Cohen et al.'s CERTIFY (ICML 2019) on each point: the smoothed classifier's prediction and "
        "the L2 radius it is certified at, with probability >= 1 - alpha. Writes certify.tsv, certify.json and "
        "certify.html to --out.",
    )
    add_model_options(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="mnist-sample[:eval|train|all], npz:PATH, pt:PATH, cifar10:test, ...")
    data.add_argument("--data-root", help="where torchvision datasets are stored (and downloaded)")
    data.add_argument("--limit", type=int, help="certify only this many points")
    data.add_argument("--subset-seed", type=int, help="take a seeded random subset of --limit points")
    smoothing = parser.add_argument_group("smoothing")
    smoothing.add_argument("--sigma", type=float, help="noise standard deviation (default 0.25)")
    smoothing.add_argument("--n0", type=int, default=100, help="selection samples per point (default 100)")
    smoothing.add_argument("--n", "--samples", dest="n", type=int, default=100_000,
                           help="estimation samples per point (default 100000); under torchrun write --samples "
                           "(torchrun's own parser takes --n for an abbreviation of its options)")
    smoothing.add_argument("--alpha", type=float, default=0.001, help="error probability (default 0.001)")
    smoothing.add_argument("--batch-size", type=int, default=1000, help="noise samples per forward pass (1000)")
    smoothing.add_argument("--radii", help="radii of the certified-accuracy table (default 0,0.5,1,1.5,2)")
    parser.add_argument("--out", default="runs/certify", help="output directory (default runs/certify)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_history_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Certify, print the summary, write the files; under torchrun each process certifies its share."""
    from bastion import distributed

    with distributed.session(args.device) as world:
        return _certify(args, world)


def _certify(args: argparse.Namespace, world: World) -> int:
    """Each rank certifies chunks of `group_size` points; rank 0 gathers the rows by index and writes."""
    from bastion import distributed
    from bastion.certify.dataset import certify_dataset, group_size
    from bastion.certify.smoothing import Smooth
    from bastion.certify.summary import parse_radii, summarize
    from bastion.data import load_dataset

    require(args, "model", "data")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    sigma = 0.25 if args.sigma is None else args.sigma
    if not sigma > 0:
        raise InputError(f"--sigma must be > 0, got {sigma}")
    Smooth.check_settings(n=args.n, n0=args.n0, alpha=args.alpha, batch_size=args.batch_size)
    grid = parse_radii(args.radii)
    history = prepare_history(args, out=args.out)
    args.device = world.device  # under torchrun: this rank's GPU (LOCAL_RANK) or the CPU
    loaded = load_model_from_args(args)
    full = load_dataset(args.data, root=args.data_root)
    indices = _selection(len(full), args.limit, args.subset_seed)
    positions = distributed.shard_chunks(len(indices), group_size(args.n0, args.batch_size), world.rank, world.size)
    mine = [indices[p] for p in positions]
    shard = certify_dataset(loaded.module, full.subset(mine), sigma=sigma, n0=args.n0, n=args.n, alpha=args.alpha,
                            batch_size=args.batch_size, seed=args.seed, indices=mine,
                            progress=world.is_main and not args.quiet)
    rows = distributed.gather_by_index(list(zip(positions, shard, strict=True)))
    if rows is None:
        return 0  # rank 0 writes the outputs and records the run
    data = full.subset(indices)
    settings = {"sigma": sigma, "n0": args.n0, "n": args.n, "alpha": args.alpha, "batch_size": args.batch_size,
                "seed": args.seed, "radii": grid, "limit": args.limit, "subset_seed": args.subset_seed}
    provenance = _provenance(loaded, full, data, args)
    if world.active:
        provenance["processes"] = world.size
    report = {
        "schema_version": 1,
        "kind": "certify",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "summary": summarize(rows, grid, sigma=sigma, n=args.n, alpha=args.alpha),
        "rows": rows,
        "provenance": provenance,
    }
    paths = write_outputs(report, Path(args.out))
    print(format_summary(report))
    print("\n".join(["", "wrote:", *(f"  {p}" for p in paths)]))
    return history.record("certify", report, out=args.out, report=paths[2], artifacts=paths[:2])


def _selection(size: int, limit: int | None, seed: int | None) -> list[int]:
    """Dataset indices `ImageSet.select` keeps: the first `limit`, or a seeded random subset in order."""
    import torch

    if limit is None:
        return list(range(size))
    if limit < 1 or limit > size:
        raise InputError(f"--limit must lie in [1, {size}], the size of the data, got {limit}")
    if seed is None:
        return list(range(limit))
    chosen = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:limit]
    return [int(i) for i in torch.sort(chosen).values]


def _provenance(loaded: Any, full: Any, data: Any, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import scipy
    import torch

    from bastion import __version__
    from bastion.models import model_device_dtype

    device, dtype = model_device_dtype(loaded.module)
    return {
        "versions": {"bastion": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__, "python": platform.python_version()},
        "model": {"spec": loaded.spec, "fingerprint": loaded.fingerprint, "class": type(loaded.module).__name__},
        "data": {"spec": full.name, "fingerprint": data.fingerprint, "n": len(data), "shape": list(data.shape)},
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "platform": platform.platform(),
        "command": "bastion " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    """certify.tsv (one row per point), certify.json and certify.html, each written atomically."""
    import json

    from bastion._io import write_atomic
    from bastion.report.pages import render_certify_html

    lines = ["\t".join(_COLUMNS)]
    for row in report["rows"]:
        lines.append("\t".join(_cell(row[c]) for c in _COLUMNS))
    return [write_atomic(out / "certify.tsv", "\n".join(lines) + "\n"),
            write_atomic(out / "certify.json", json.dumps(report, indent=2, allow_nan=False) + "\n"),
            write_atomic(out / "certify.html", render_certify_html(report))]


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def format_summary(report: dict[str, Any]) -> str:
    """The terminal table: certified accuracy per radius, abstain rate, time per point."""
    summary, settings = report["summary"], report["settings"]
    lines = [f"randomized smoothing, sigma={settings['sigma']:g}, n0={settings['n0']}, n={settings['n']}, "
             f"alpha={settings['alpha']:g}, {summary['n_points']} points",
             f"{'radius':>8}  certified accuracy"]
    lines += [f"{p['radius']:>8.3g}  {p['accuracy']:.1%}" for p in summary["certified_accuracy"]]
    lines.append(f"abstain rate {summary['abstain_rate']:.1%}; largest certifiable radius with this n "
                 f"{summary['max_certifiable_radius']:.3g}; {summary['seconds_per_image']:.3g} s per point")
    return "\n".join(lines)
