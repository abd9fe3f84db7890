"""bastion's AutoAttack against an independent implementation, side by side on the same model and points.

Both cascades run the standard version's members in order (APGD-CE, APGD-T, FAB-T, Square with
5,000 queries) on the same correctly classified points, each member only on the points still robust,
and the table shows the robust accuracy after each member and its wall time. The reference is
torchattacks (not a bastion dependency): install it into a throwaway environment with
`pip install --no-deps torchattacks` next to torch, then run this script there.

Usage: python benchmarks/bench_autoattack.py [--model zoo:mnist-cnn-at] [--n 1000] [--eps 0.3]
Convention: images 8000-9999 of mnist-sample are the evaluation split.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import torch

from bastion import ThreatModel
from bastion.attacks.autoattack import build_members
from bastion.data import load_dataset
from bastion.models import load_model


def cascades(implementations, x, y, block):
    """Run each implementation's members in order, each on its own still-robust points.

    The points are split into blocks of `block`; within a block every member runs for every
    implementation in turn (bastion's APGD-CE, the reference's APGD-CE, bastion's APGD-T, ...), and
    the implementation that goes first alternates from block to block, so both see the same machine
    load over time. Each point's cascade is independent of the others', so blocking changes only the
    batch composition.
    implementations: {label: [(name, attack_fn)]}, attack_fn(x, y) -> fooled mask.
    Returns {label: [(member name, robust share of the points after it, seconds)]}.
    """
    labels = list(implementations)
    n_members = len(implementations[labels[0]])
    robust = {label: torch.ones(len(x), dtype=torch.bool) for label in labels}
    after = {label: torch.ones(n_members, len(x), dtype=torch.bool) for label in labels}
    seconds = {label: [0.0] * n_members for label in labels}
    for number, part in enumerate(torch.arange(len(x)).split(block)):
        order = labels if number % 2 == 0 else labels[::-1]
        for step in range(n_members):
            for label in order:
                todo = part[robust[label][part]]
                start = time.perf_counter()
                if len(todo):
                    fooled = implementations[label][step][1](x[todo], y[todo])
                    robust[label][todo[fooled]] = False
                seconds[label][step] += time.perf_counter() - start
                after[label][step, part] = robust[label][part]
        done = int(part[-1]) + 1
        print(f"  {done} points: " + "; ".join(
            f"{label} robust {float(robust[label][:done].float().mean()):.2%} in {sum(seconds[label]):.0f} s ("
            + ", ".join(f"{seconds[label][step]:.0f}" for step in range(n_members)) + ")"
            for label in labels), flush=True)
    return {label: [(name, float(after[label][step].float().mean()), seconds[label][step])
                    for step, (name, _) in enumerate(implementations[label])] for label in labels}


def bastion_members(norm, eps, seed):
    threat = ThreatModel(norm, eps)
    generator = torch.Generator().manual_seed(seed)
    members = []
    for attack in build_members("standard"):
        def run(x, y, attack=attack):
            return attack(MODEL, x, y, threat, generator=generator).success
        members.append((attack.name, run))
    return members


def reference_members(norm, eps, seed, n_classes):
    import torchattacks

    norm_name = {"linf": "Linf", "l2": "L2"}[norm]
    attacks = [
        ("apgd-ce", torchattacks.APGD(MODEL, norm=norm_name, eps=eps, steps=100, n_restarts=1, loss="ce", seed=seed)),
        ("apgd-t", torchattacks.APGDT(MODEL, norm=norm_name, eps=eps, steps=100, n_restarts=1, n_classes=n_classes,
                                      seed=seed)),
        ("fab-t", torchattacks.FAB(MODEL, norm=norm_name, eps=eps, steps=100, n_restarts=1, multi_targeted=True,
                                   n_classes=n_classes, seed=seed)),
        ("square", torchattacks.Square(MODEL, norm=norm_name, eps=eps, n_queries=5000, n_restarts=1, seed=seed)),
    ]
    members = []
    for name, attack in attacks:
        def run(x, y, attack=attack):
            x_adv = attack(x, y)
            with torch.no_grad():
                return MODEL(x_adv).argmax(1) != y
        members.append((name, run))
    return members


def main() -> None:
    global MODEL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="zoo:mnist-cnn-at")
    parser.add_argument("--weights", help="state dict for a factory-built --model")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--norm", default="linf")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--block", type=int, default=200, help="points per block (and per batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", action="store_true",
                        help="run the implementations at the same time, one process (and core) each, so both see "
                        "the same machine load (needs 2 free cores); default: interleaved in one process")
    parser.add_argument("--members", default="apgd-ce,apgd-t,fab-t,square",
                        help="comma-separated subset of the standard members, e.g. fab-t to time one alone")
    args = parser.parse_args()

    MODEL = load_model(args.model, weights=args.weights, device="cpu").module
    for p in MODEL.parameters():
        p.requires_grad_(False)
    data = load_dataset("mnist-sample:eval", limit=args.n)
    x, y = data.batch(slice(None))
    with torch.no_grad():
        correct = MODEL(x).argmax(1) == y
    x, y = x[correct], y[correct]
    share = float(correct.float().mean())
    print(f"{args.model}, {args.n} points of mnist-sample:eval, {args.norm} eps={args.eps}; "
          f"clean accuracy {share:.1%}; {torch.get_num_threads()} threads")

    implementations = {"bastion": bastion_members(args.norm, args.eps, args.seed)}
    try:
        implementations["torchattacks"] = reference_members(args.norm, args.eps, args.seed, data.num_classes)
    except ImportError:
        print("torchattacks is not installed here: pip install --no-deps torchattacks scipy (in a throwaway venv)")
    wanted = args.members.split(",")
    implementations = {k: [m for m in v if m[0] in wanted] for k, v in implementations.items()}
    if args.parallel:
        tables = parallel_cascades(implementations, x, y, args.block)
    else:
        tables = cascades(implementations, x, y, args.block)

    print(f"\n{'implementation':<14}" + "".join(f"{name + ' acc':>14}{'s':>8}" for name, _, _ in tables["bastion"])
          + f"{'total s':>10}")
    for label, rows in tables.items():
        cells = "".join(f"{share * acc:>14.2%}{seconds:>8.1f}" for _, acc, seconds in rows)
        print(f"{label:<14}{cells}{sum(r[2] for r in rows):>10.1f}")
    if "torchattacks" in tables:
        worst = max(share * (b[1] - r[1]) for b, r in zip(tables["bastion"], tables["torchattacks"], strict=True))
        ratio = sum(r[2] for r in tables["bastion"]) / sum(r[2] for r in tables["torchattacks"])
        print(f"\nbastion minus reference, worst sub-attack: {worst * 100:+.2f} points (bar <= +0.5); "
              f"wall-time ratio bastion / reference: {ratio:.2f} (bar <= 1.0)")


def parallel_cascades(implementations, x, y, block):
    """`cascades` for each implementation in its own forked process, all started together."""
    global _JOBS
    _JOBS = (implementations, x, y, block)
    with multiprocessing.get_context("fork").Pool(len(implementations)) as pool:
        tables = pool.map(_one_cascade, list(implementations))
    return {label: table for label, table in zip(implementations, tables, strict=True)}


def _one_cascade(label):
    implementations, x, y, block = _JOBS
    torch.set_num_threads(1)
    return cascades({label: implementations[label]}, x, y, block)[label]


MODEL: torch.nn.Module
_JOBS: tuple

if __name__ == "__main__":
    main()
