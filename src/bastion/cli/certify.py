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

_COLUMNS = ("index", "label", "prediction", "radius", "correct", "p_lower", "count", "n", "samples", "seconds")


def register(commands: Any) -> None:
    """Add the `certify` subcommand."""
    parser = commands.add_parser(
        "certify",
        help="certify L2 robustness by randomized smoothing",
        description="Cohen et al.'s CERTIFY (ICML 2019) on each point: the smoothed classifier's prediction and "
        "the L2 radius it is certified at, with probability >= 1 - alpha. --sequential spends only the samples "
        "each point needs: with --radii it decides each radius by anytime-valid tests (Voracek & Hein, NeurIPS "
        "2024), without it gives each point its radius with an input-specific sample size (ISS, Chen et al., "
        "AAAI 2022). Writes certify.tsv, certify.json and certify.html to --out.",
    )
    add_model_options(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="mnist-sample[:eval|train|all], npz:PATH, pt:PATH, cifar10:test, ...")
    data.add_argument("--data-root", help="where torchvision datasets are stored (and downloaded)")
    data.add_argument("--limit", type=int, help="certify only this many points")
    data.add_argument("--subset-seed", type=int, help="take a seeded random subset of --limit points")
    smoothing = parser.add_argument_group("smoothing")
    smoothing.add_argument("--sigma", type=float, help="noise standard deviation (default 0.25)")
    smoothing.add_argument("--n0", type=int, help="selection samples per point (default 100; 16 with --sequential "
                           "--radii)")
    smoothing.add_argument("--n", "--samples", dest="n", type=int,
                           help="estimation samples per point (default 100000); with --sequential the most a point "
                           "may draw (default 30000 with --radii, 100000 without); under torchrun write --samples "
                           "(torchrun's own parser takes --n for an abbreviation of its options)")
    smoothing.add_argument("--alpha", type=float, default=0.001, help="error probability (default 0.001)")
    smoothing.add_argument("--batch-size", type=int, default=1000, help="noise samples per forward pass (1000)")
    smoothing.add_argument("--radii", help="radii of the certified-accuracy table (default 0,0.5,1,1.5,2); with "
                           "--sequential, the radii to decide")
    smoothing.add_argument("--sequential", action="store_true",
                           help="stop sampling each point as soon as its answer is known: with --radii, decide each "
                           "radius (certified or refuted) by a confidence sequence valid at --alpha; without, "
                           "input-specific sample sizes whose mean radius lies within --decline of the radius at --n")
    smoothing.add_argument("--decline", type=float,
                           help="--sequential without --radii: the largest expected radius loss against --n (0.05): "
                           "the mean over the points expected to certify (one point may lose more), or each point's "
                           "with --allocation point")
    smoothing.add_argument("--allocation", choices=("global", "point"),
                           help="--sequential without --radii: plan all points' sample sizes together for the fewest "
                           "samples at a mean --decline (global, the default), or each point alone (point; Chen et "
                           "al.'s ISS)")
    smoothing.add_argument("--randomized", action="store_true",
                           help="the randomized Clopper-Pearson bound (Voracek & Hein 2024): same guarantee, larger "
                           "radii; its uniform draws are seeded by --seed and each point's index")
    smoothing.add_argument("--sound", action=argparse.BooleanOptionalAction, default=True,
                           help="sound in floating point (Voracek & Hein, ICLR 2023): float64 noise, noisy inputs "
                           "rounded to a 2^-12 grid, bounds lowered by the rounding slack (about 1e-8); on by default, "
                           "it costs about 5%% more time")
    parser.add_argument("--out", default="runs/certify", help="output directory (default runs/certify)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out (its saved groups are kept; same certificates)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
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
    from bastion.certify.partial import PartialRows
    from bastion.certify.plan import plan_samples
    from bastion.certify.procedure import Procedure
    from bastion.certify.smoothing import Smooth
    from bastion.certify.summary import parse_radii, summarize
    from bastion.data import load_dataset

    require(args, "model", "data")
    sigma = 0.25 if args.sigma is None else args.sigma
    if not sigma > 0:
        raise InputError(f"--sigma must be > 0, got {sigma}")
    grid = parse_radii(args.radii)
    for flag, what, value in (("--decline", "radius loss", args.decline),
                              ("--allocation", "sample allocation", args.allocation)):
        if value is not None and not (args.sequential and args.radii is None):
            raise InputError(f"{flag} sets the {what} of --sequential without --radii (input-specific n); "
                             "drop it, or drop --radii and add --sequential")
    procedure = Procedure.build(sequential=args.sequential, radii=grid if args.radii is not None else None,
                                n0=args.n0, n=args.n, alpha=args.alpha, decline=args.decline,
                                randomized=args.randomized, sound=args.sound, allocation=args.allocation)
    Smooth.check_settings(n=procedure.n, n0=procedure.n0, alpha=procedure.alpha, batch_size=args.batch_size)
    out = check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    finished = _guard_earlier_run(out, resume=args.resume, overwrite=args.overwrite)
    if finished is not None:
        if world.is_main:
            print(f"the run in {out} is finished: its results are in {finished}; nothing was run again "
                  "(--overwrite runs it again)")
        return 0
    history = prepare_history(args, out=args.out)
    args.device = world.device  # under torchrun: this rank's GPU (LOCAL_RANK) or the CPU
    loaded = load_model_from_args(args)
    full = load_dataset(args.data, root=args.data_root)
    indices = _selection(len(full), args.limit, args.subset_seed)
    data = full.subset(indices)
    settings = {"sigma": sigma, **procedure.settings(), "batch_size": args.batch_size, "seed": args.seed,
                "radii": grid, "limit": args.limit, "subset_seed": args.subset_seed}
    partial = PartialRows(out, world.rank, {**settings, "model": loaded.fingerprint, "data": data.fingerprint})
    saved = partial.load() if args.resume else {}
    distributed.barrier()  # every rank has read the saved rows before any rewrites its file
    group = group_size(procedure.n0, args.batch_size)
    positions = distributed.shard_chunks(len(indices), group, world.rank, world.size)
    kept = [saved[indices[p]] for p in positions if indices[p] in saved]
    todo = [p for chunk in _chunks(positions, group) if not all(indices[p] in saved for p in chunk) for p in chunk]
    mine = [indices[p] for p in todo]
    again = set(mine)
    partial.start(r for r in kept if r["index"] not in again)
    if saved and world.is_main:
        print(f"resuming: {len(saved)} of {len(indices)} points were certified before", file=sys.stderr)
    plan = None
    if procedure.kind == "iss" and procedure.allocation == "global":  # every rank pilots its share, saved or not
        own = [indices[p] for p in positions]
        plan = plan_samples(loaded.module, full.subset(own), sigma=sigma, procedure=procedure,
                            batch_size=args.batch_size, seed=args.seed, indices=own, gather=distributed.all_gather)
    fresh = [] if not mine else certify_dataset(loaded.module, full.subset(mine), sigma=sigma, procedure=procedure,
                            batch_size=args.batch_size, seed=args.seed, indices=mine,
                            progress=world.is_main and not args.quiet,
                            on_group=partial.append, plan=plan)
    done = {r["index"]: r for r in kept} | {r["index"]: r for r in fresh}
    rows = distributed.gather_by_index([(p, done[indices[p]]) for p in positions])
    if rows is None:
        return 0  # rank 0 writes the outputs and records the run
    provenance = _provenance(loaded, full, data, args)
    if world.active:
        provenance["processes"] = world.size
    report = {
        "schema_version": 2,
        "kind": "certify",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "summary": summarize(rows, grid, sigma=sigma, n=procedure.n, alpha=procedure.alpha,
                             fixed_samples=procedure.fixed_samples),
        "rows": rows,
        "provenance": provenance,
    }
    paths = write_outputs(report, out)
    partial.clear()
    print(format_summary(report))
    print("\n".join(["", "wrote:", *(f"  {p}" for p in paths)]))
    return history.record("certify", report, out=args.out, report=paths[2], artifacts=paths[:2])


def _chunks(positions: list[int], size: int) -> list[list[int]]:
    """`positions` cut into the chunks `shard_chunks` dealt: chunk c holds positions c * size to (c + 1) * size - 1."""
    from itertools import groupby

    return [list(chunk) for _, chunk in groupby(positions, key=lambda p: p // size)]


def _guard_earlier_run(out: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """certify.json of a finished run to leave alone (--resume), or None to go on; refuse to replace it silently."""
    if resume and overwrite:
        raise InputError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    finished = out / "certify.json"
    unfinished = sorted(out.glob("certify.partial.*.jsonl"))
    if overwrite:
        for path in unfinished:
            path.unlink(missing_ok=True)
        return None
    if finished.exists() and not unfinished:
        if resume:
            return finished
        raise InputError(f"{out} holds the results of an earlier run ({finished.name}): --overwrite to replace "
                         "them, or another --out")
    if unfinished and not resume:
        raise InputError(f"{out} holds an interrupted run: --resume to continue it, --overwrite to start over, "
                         "or another --out")
    return None


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
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def format_summary(report: dict[str, Any]) -> str:
    """The terminal table: certified accuracy per radius, abstain rate, time per point."""
    summary, settings = report["summary"], report["settings"]
    lines = [f"randomized smoothing, sigma={settings['sigma']:g}, {_procedure_text(settings)}, "
             f"{summary['n_points']} points",
             f"{'radius':>8}  certified accuracy"]
    lines += [f"{p['radius']:>8.3g}  {p['accuracy']:.1%}" for p in summary["certified_accuracy"]]
    lines.append(f"abstain rate {summary['abstain_rate']:.1%}; largest certifiable radius with this n "
                 f"{summary['max_certifiable_radius']:.3g}; {summary['seconds_per_image']:.3g} s per point")
    if summary.get("samples"):
        line = f"{summary['samples_per_point']:,.0f} base-model samples per point ({summary['samples']:,} in all)"
        if summary.get("saved"):
            line += (f": {summary['saved']:.1f}x fewer than fixed-n CERTIFY with n={settings['n']} "
                     f"({summary['fixed_samples']:,})")
        lines.append(line)
    return "\n".join(lines)


def _procedure_text(settings: dict[str, Any]) -> str:
    kind = settings.get("procedure", "fixed")
    common = f"n0={settings['n0']}, alpha={settings['alpha']:g}"
    if kind == "sequential":
        radii = ", ".join(f"{r:g}" for r in settings.get("decided_radii", []))
        return f"sequential decisions at radii {radii} ({common}, at most n={settings['n']})"
    if kind == "iss":
        per = "mean" if settings.get("allocation") == "global" else "per-point"  # runs before it was per point
        return (f"input-specific n (ISS, {common}, n <= {settings['n']}, {per} radius decline <= "
                f"{settings['decline']:g})")
    extras = [name for name, key in (("randomized Clopper-Pearson", "randomized"), ("sound", "sound"))
              if settings.get(key)]
    return ", ".join([f"{common}, n={settings['n']}", *extras])
