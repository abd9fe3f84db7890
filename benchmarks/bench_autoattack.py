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
import time

import torch

from bastion import ThreatModel
from bastion.attacks.autoattack import build_members
from bastion.data import load_dataset
from bastion.models import load_model


def cascades(implementations, x, y, chunk):
    """Run each implementation's members in order, each on its own still-robust points.

    Members are interleaved across implementations (bastion's APGD-CE, the reference's APGD-CE,
    bastion's APGD-T, ...), so both see the same machine load over time.
    implementations: {label: [(name, attack_fn)]}, attack_fn(x, y) -> fooled mask.
    """
    robust = {label: torch.ones(len(x), dtype=torch.bool) for label in implementations}
    rows = {label: [] for label in implementations}
    for step in range(len(next(iter(implementations.values())))):
        for label, members in implementations.items():
            name, attack_fn = members[step]
            start = time.perf_counter()
            todo = robust[label].nonzero().squeeze(1)
            for part in todo.split(chunk):
                fooled = attack_fn(x[part], y[part])
                robust[label][part[fooled]] = False
            rows[label].append((name, float(robust[label].float().mean()), time.perf_counter() - start))
            print(f"  {label:<14}{name:<10} robust {rows[label][-1][1]:.2%} of the correct points, "
                  f"{rows[label][-1][2]:.1f} s", flush=True)
    return rows


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
    parser.add_argument("--chunk", type=int, default=500, help="points per batch")
    parser.add_argument("--seed", type=int, default=0)
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
    tables = cascades(implementations, x, y, args.chunk)

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


MODEL: torch.nn.Module

if __name__ == "__main__":
    main()
