"""`apgd-fast` against the standard AutoAttack: robust accuracy, passes per point and wall time.

Each zoo model is attacked at its radius (Linf 0.3 for the adversarially trained CNN, 0.1 for the
others, which eps 0.3 breaks entirely within a few passes; `--eps` sets one radius for all) on the
same N evaluation points (images 8000 to 8000 + N - 1 of
mnist-sample) by (a) `apgd-fast` (ODI-started margin APGD, then targeted margin APGD on the three
MALT-nearest classes, hopeless points giving up early) and (b) bastion's `autoattack`, version
standard (APGD-CE, APGD-T with 9 targets, FAB-T, Square with 5,000 queries), each in one call with
the same seed, one after the other in one single-threaded process. A point counts as robust when it
is classified correctly and the attack did not fool it. Passes are samples through the model,
forward and backward, divided by N (the counts of `AttackResult.passes`, final check included).

With `--suite`, each model also goes through the whole `bastion evaluate --suite fast` (probes,
apgd-fast, checks, escalation, audit, curve, per-class) on the same points: its robust accuracy,
verdict, passes per point summed over every stage, and AutoAttack's passes over those (issue 13's
bar: at least 10x on honest models).

    OMP_NUM_THREADS=1 python benchmarks/bench_fast.py --n 100
    OMP_NUM_THREADS=1 python benchmarks/bench_fast.py --n 200 --models zoo:mnist-cnn-at --suite
    OMP_NUM_THREADS=1 python benchmarks/bench_fast.py --n 1000 --suite --panel --cache runs/aa-cache

`--panel` adds the models `benchmarks/panel.py` trained (TRADES, MART, FGSM-RS, L2 PGD-AT, a wider
CNN), each at the norm and radius it was trained for.

AutoAttack is the slow side (about half an hour per 1,000 points of a robust MNIST model on one
core): `--cache DIR` keeps its per-point results, passes and seconds in DIR, keyed by model, norm,
eps, N and seed, and a later run reads them instead of attacking again (its seconds are then the
cached run's, marked "cached").
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from bastion import ThreatModel
from bastion.attacks import ATTACKS, AttackResult
from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.models import load_model
from bastion.models.zoo import ZOO

sys.path.insert(0, str(Path(__file__).parent))
from panel import panel_models  # noqa: E402  (a sibling script, not a package)

#: Linf radius per zoo model: where it is partly robust, so the attacks have work to do.
LINF_EPS = {"zoo:mnist-cnn-at": 0.3}
DEFAULT_LINF_EPS = 0.1


Row = tuple[torch.Tensor, float, float, float]  # which points stay robust, fwd and bwd passes per point, seconds


def attack(name: str, params: dict, model, x, y, threat, seed: int) -> Row:
    """Which points stay robust, forward and backward passes per point, seconds."""
    generator = torch.Generator().manual_seed(seed)
    result: AttackResult = ATTACKS.create(name, **params)(model, x, y, threat, generator=generator)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    n, passes = len(x), result.passes
    return correct & ~result.success, passes.forward_samples / n, passes.backward_samples / n, result.seconds


def cached(cache: Path | None, key: str, run: Callable[[], Row]) -> tuple[Row, bool]:
    """`run()`, or its result saved in CACHE/KEY.pt by an earlier run; the flag says whether it was read back."""
    if cache is None:
        return run(), False
    path = cache / (re.sub(r"[^A-Za-z0-9.=-]+", "_", key) + ".pt")
    if path.exists():
        return torch.load(path, weights_only=True), True
    result = run()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(result, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return result, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="evaluation points (images 8000 to 8000 + n - 1)")
    parser.add_argument("--models", nargs="*", default=[f"zoo:{name}" for name in ZOO],
                        help="model specs (default: the zoo; none: the panel only)")
    parser.add_argument("--norm", choices=["linf", "l2"], default="linf")
    parser.add_argument("--eps", type=float, help="radius for every model (default: Linf 0.3 for mnist-cnn-at, "
                        "0.1 for the others; L2 2.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suite", action="store_true", help="also run the whole fast suite (evaluate --suite fast)")
    parser.add_argument("--cache", type=Path, help="folder keeping AutoAttack's results between runs")
    parser.add_argument("--panel", type=Path, nargs="?", const=Path("runs/panel"),
                        help="also the models benchmarks/panel.py trained under this folder (default runs/panel), "
                        "each at its own norm and radius")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = load_dataset("mnist-sample:eval", limit=args.n).batch(slice(None))
    print(f"{args.n} points of mnist-sample:eval, {args.norm}, seed {args.seed}")
    print(f"{'model':20s} {'eps':>5s} {'attack':12s} {'robust':>7s} {'fwd/pt':>8s} {'bwd/pt':>8s} {'seconds':>8s}")
    runs = [(spec, spec, args.norm, args.eps if args.eps is not None else (
        LINF_EPS.get(spec, DEFAULT_LINF_EPS) if args.norm == "linf" else 2.0)) for spec in args.models]
    if args.panel is not None:
        runs += [(f"panel:{name}", path, r.norm, r.eps) for name, (path, r) in panel_models(args.panel).items()]
    for spec, path, norm, eps in runs:
        threat = ThreatModel(norm, eps)
        model = load_model(path).module.eval()
        reference, was_cached = cached(
            args.cache, f"autoattack-{spec}-{norm}-eps={eps:g}-n={args.n}-seed={args.seed}",
            partial(attack, "autoattack", {"version": "standard"}, model, x, y, threat, args.seed))
        rows = {"apgd-fast": attack("apgd-fast", {}, model, x, y, threat, args.seed), "autoattack": reference}
        for label, (robust, fwd, bwd, seconds) in rows.items():
            share, note = float(robust.float().mean()), " (cached)" if label == "autoattack" and was_cached else ""
            print(f"{spec:20s} {eps:5g} {label:12s} {share:7.2%} {fwd:8.1f} {bwd:8.1f} {seconds:8.1f}{note}",
                  flush=True)
        (robust_f, ff, bf, sf), (robust_a, fa, ba, sa) = rows["apgd-fast"], rows["autoattack"]
        rf, ra = float(robust_f.float().mean()), float(robust_a.float().mean())
        print(f"{spec:20s} {eps:5g} {'AA / fast':12s} {100 * (rf - ra):+6.2f}p {fa / ff:7.1f}x "
              f"{ba / max(bf, 1e-9):7.1f}x {sa / sf:7.1f}x   (robust: fast minus AA in points; "
              f"passes and time: AA over fast; fwd+bwd {(fa + ba) / (ff + bf):.1f}x)", flush=True)
        print(f"{'':26s} points only AA broke: {int((robust_f & ~robust_a).sum())}; "
              f"only apgd-fast broke: {int((robust_a & ~robust_f).sum())}", flush=True)
        if args.suite:
            suite(spec, model, args, threat, fa + ba)


def suite(spec: str, model: torch.nn.Module, args: argparse.Namespace, threat: ThreatModel,
          autoattack_passes: float) -> None:
    """The whole fast suite on the same points: robust accuracy, verdict, passes per point over every stage."""
    data = load_dataset("mnist-sample:eval", limit=args.n)
    eps = threat.eps
    config = EvalConfig.build(model=spec, data="mnist-sample:eval", norm=threat.norm.name, eps=eps, suite="fast",
                              seed=args.seed)
    result = evaluate_model(model, data, config)
    fwd = sum(s.passes["forward_samples"] for s in result.stages) / args.n
    bwd = sum(s.passes["backward_samples"] for s in result.stages) / args.n
    seconds = sum(s.seconds for s in result.stages)
    print(f"{spec:20s} {eps:5g} {'fast suite':12s} {result.summary.robust_accuracy:7.2%} {fwd:8.1f} {bwd:8.1f} "
          f"{seconds:8.1f}   verdict {result.verdict.verdict}; AutoAttack's passes over the suite's: "
          f"{autoattack_passes / (fwd + bwd):.1f}x; per stage (fwd+bwd per point): "
          + ", ".join(f"{s.name} {(s.passes['forward_samples'] + s.passes['backward_samples']) / args.n:.0f}"
                      for s in result.stages), flush=True)


if __name__ == "__main__":
    main()
