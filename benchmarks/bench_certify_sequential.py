"""Sequential and input-specific certification against fixed-n CERTIFY, on the same points, in one run.

Prints, for each procedure: base-model samples per point (selection included; hardware independent),
wall time and its ratio to the fixed-n baseline measured in this run, certified accuracy at each
radius, and the mean certified radius (abstentions count 0).

- Decision mode (issue 24's first bar): `--sequential --radii R` against fixed-n CERTIFY with
  n = --fixed-n (10,000 by default, the n of locuslab's reference runs): at least as many points
  certified at each radius, with at most a tenth of its samples.
- Radius mode (its second bar): `--sequential` (input-specific n) at each --declines value and each
  --allocations entry against fixed n = --radius-n (100,000): mean radius within 0.05, with at least
  3x fewer samples. "global" (the default) plans all points together for a mean decline (pilots
  included in the cost), "point" is Chen et al.'s ISS with a cap on each point's decline.

Run with one thread: OMP_NUM_THREADS=1 python benchmarks/bench_certify_sequential.py --points 100
Convention: images 8000-9999 of mnist-sample are the evaluation split (mnist-sample:eval).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from bastion.certify.allocation import Pilot, allocate
from bastion.certify.dataset import certify_dataset
from bastion.certify.procedure import Procedure
from bastion.certify.summary import parse_radii, summarize
from bastion.data import load_dataset
from bastion.models import load_zoo_model

CACHE: Path | None = None


def run(model, data, sigma, procedure, grid, seed):
    """Certify and summarize; with --cache, a baseline already measured with the same settings is read back."""
    # Keyed by the recorded settings (not the dataclass's repr), so a new field of Procedure keeps old baselines.
    setting = json.dumps(procedure.settings(), sort_keys=True)
    key = hashlib.sha1(repr((data.fingerprint, sigma, setting, grid, seed)).encode()).hexdigest()[:16]
    if CACHE is not None and (CACHE / f"{key}.json").exists():
        cached = json.loads((CACHE / f"{key}.json").read_text())
        return cached["summary"], cached["wall"], cached.get("rows")
    began = time.perf_counter()
    rows = certify_dataset(model, data, sigma=sigma, procedure=procedure, batch_size=1000, seed=seed)
    wall = time.perf_counter() - began
    summary = summarize(rows, grid, sigma=sigma, n=procedure.n, alpha=procedure.alpha)
    if CACHE is not None:
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / f"{key}.json").write_text(json.dumps({"summary": summary, "wall": wall, "rows": rows}))
    return summary, wall, rows


def oracle(rows, radius_n, alpha, sigma, decline):
    """Samples per point a plan needs for an expected mean decline, knowing each pA (the fixed run's count / n).

    No pilot, no planning error: no procedure that estimates on fresh samples with CERTIFY's bound
    can expect to do better on these points (up to the allocation's grid).
    """
    pilots = [Pilot(index=i, top=0, count=r["count"], n=r["n"]) for i, r in enumerate(rows)]
    sizes = allocate(pilots, budget=radius_n, alpha=alpha, sigma=sigma, decline=decline, optimism=0.0)
    return sum(sizes.values()) / len(sizes)


def line(name, summary, wall, baseline, grid):
    cells = [f"{name:<34}", f"{summary['samples_per_point']:>10,.0f}", f"{wall:>8.1f}"]
    if baseline is not None:
        cells.append(f"{baseline[0]['samples_per_point'] / summary['samples_per_point']:>7.1f}x")
        cells.append(f"{baseline[1] / wall:>6.1f}x")
    else:
        cells += [f"{'—':>8}", f"{'—':>7}"]
    cells += [f"{p['accuracy']:>8.1%}" for p in summary["certified_accuracy"]]
    cells.append(f"{summary['mean_radius']:>8.3f}")
    print("  ".join(cells), flush=True)


def header(grid):
    names = ["procedure".ljust(34), f"{'samples/pt':>10}", f"{'wall s':>8}", f"{'samples':>8}", f"{'wall':>7}"]
    names += [f"{'r=' + format(r, 'g'):>8}" for r in grid]
    print("  ".join([*names, f"{'mean r':>8}"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist-cnn-noise", help="zoo model (default mnist-cnn-noise)")
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--start", type=int, default=0, help="first point of mnist-sample:eval")
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--radii", default="0.5,1", help="radii decision mode decides")
    parser.add_argument("--fixed-n", type=int, default=10_000)
    parser.add_argument("--radius-n", type=int, default=100_000)
    parser.add_argument("--declines", default="0.05", help="radius-mode declines to measure, comma-separated")
    parser.add_argument("--allocations", default="global,point", help="radius-mode allocations: global, point")
    parser.add_argument("--randomized", action="store_true", help="also ISS with the randomized Clopper-Pearson bound")
    parser.add_argument("--skip", default="", help="comma-separated: decision, radius")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", help="folder keeping each run's summary and time, so a rerun skips the baselines")
    args = parser.parse_args()
    global CACHE
    CACHE = Path(args.cache) if args.cache else None
    torch.set_num_threads(1)
    model = load_zoo_model(args.model)
    data = load_dataset("mnist-sample:eval").subset(range(args.start, args.start + args.points))
    skip = set(filter(None, args.skip.split(",")))
    radii = parse_radii(args.radii)
    print(f"zoo:{args.model}, {args.points} points from mnist-sample:eval[{args.start}:], sigma {args.sigma}, "
          f"alpha {args.alpha}; ratios are the baseline's over the procedure's (this run, one thread)")
    if "decision" not in skip:
        print(f"\ndecision mode: radii {args.radii}")
        header(radii)
        fixed = Procedure(n0=100, n=args.fixed_n, alpha=args.alpha)
        base = run(model, data, args.sigma, fixed, radii, args.seed)[:2]
        line(f"fixed n={args.fixed_n:,} (CERTIFY)", *base, None, radii)
        sequential = Procedure.build(sequential=True, radii=radii, n0=None, n=None, alpha=args.alpha)
        line(f"sequential (n0={sequential.n0}, budget {sequential.n:,})",
             *run(model, data, args.sigma, sequential, radii, args.seed + 1)[:2], base, radii)
    if "radius" not in skip:
        grid = parse_radii(None)
        print(f"\nradius mode: certified accuracy on the default grid, mean radius against fixed n={args.radius_n:,}")
        header(grid)
        fixed = Procedure(n0=100, n=args.radius_n, alpha=args.alpha)
        *base, rows = run(model, data, args.sigma, fixed, grid, args.seed)
        line(f"fixed n={args.radius_n:,} (CERTIFY)", *base, None, grid)
        for decline in (float(d) for d in args.declines.split(",")):
            for allocation in args.allocations.split(","):
                for randomized in (False, True) if args.randomized else (False,):
                    iss = Procedure(kind="iss", n0=100, n=args.radius_n, alpha=args.alpha, decline=decline,
                                    randomized=randomized, allocation=allocation)
                    summary, wall, _ = run(model, data, args.sigma, iss, grid, args.seed + 1)
                    name = f"{'global, mean' if allocation == 'global' else 'ISS per point,'} decline {decline:g}"
                    line(name + (", rand." if randomized else ""), summary, wall, base, grid)
                    print(f"{'':<34}  mean radius {base[0]['mean_radius'] - summary['mean_radius']:.3f} below fixed n")
            if rows is not None:
                need = oracle(rows, args.radius_n, args.alpha, args.sigma, decline)
                print(f"{'':<34}  knowing each pA (the fixed run's counts), an expected mean decline of {decline:g} "
                      f"needs {need:,.0f} samples/pt ({100 + args.radius_n:,.0f} / {need:,.0f} = "
                      f"{(100 + args.radius_n) / need:.2f}x)")


if __name__ == "__main__":
    main()
