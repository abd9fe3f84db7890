"""Every training method on the MNIST split, same model and budget: time, clean and PGD-40 accuracy.

Trains `MnistCNN` with each method on mnist-sample:train (images 0-7999) and evaluates on the 2,000
eval images (8000-9999): clean accuracy, PGD-40 with 5 restarts at Linf eps = 0.3 and, when the
strong attacks are registered, AutoAttack's APGD-CE + APGD-T. Prints a table with each method's
wall time per epoch and its ratio to `standard`.

    python benchmarks/bench_train.py --epochs 10                    # the whole table (CPU-heavy)
    python benchmarks/bench_train.py --epochs 1 --limit 256 --eval-limit 100 --methods standard fgsm-rs
    python benchmarks/bench_train.py --cost 3 --methods standard fgsm-rs pgd-at   # cost per epoch only

`--cost R` measures only the cost of an epoch: R rounds, each training every method for one epoch
in turn (the order reversed every other round, so machine load hits all methods alike), and prints
the median seconds per epoch and its ratio to `standard` measured in the same rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bastion.attacks import ATTACKS
from bastion.data import load_dataset
from bastion.models.nets import MnistCNN
from bastion.threat import ThreatModel
from bastion.train import TRAINERS, FitConfig, fit, heldout_accuracy

# Per-method settings (the papers' defaults adapted to MNIST at 0.3); trades appears at beta 1 and 6.
RUNS: list[tuple[str, str, dict]] = [
    ("standard", "standard", {}),
    ("pgd-at", "pgd-at", {"steps": 10}),
    ("pgd-at s=7", "pgd-at", {"steps": 7}),  # fewer steps, more epochs: the 10-minute budget's recipe
    ("mixed", "mixed", {"steps": 10, "mix": 0.5}),
    ("fgsm-rs", "fgsm-rs", {}),
    ("trades b=1", "trades", {"steps": 10, "beta": 1.0}),
    ("trades b=6", "trades", {"steps": 10, "beta": 6.0}),
    ("mart", "mart", {"steps": 10, "beta": 6.0}),
    ("free m=4", "free", {"replays": 4}),
    ("gaussian", "gaussian", {"sigma": 0.5}),
    ("distill T=20", "distill", {"temperature": 20.0}),
]


def autoattack_accuracy(model, data, threat, seed):
    """Robust accuracy under APGD-CE then APGD-T on the survivors, if those attacks exist."""
    names = [n for n in ("apgd-ce", "apgd-t") if n in ATTACKS]
    if not names:
        return None
    attacks = [ATTACKS.create(n) for n in names]
    generator, robust = torch.Generator().manual_seed(seed), 0
    for _, x, y in data.batches(500):
        with torch.no_grad():
            alive = model(x).argmax(1) == y
        for attack in attacks:
            if alive.any():
                result = attack(model, x[alive], y[alive], threat, generator=generator)
                alive[alive.clone()] = ~result.success
        robust += int(alive.sum())
    return robust / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--free-epochs", type=int, help="epochs of free (default epochs / replays, as in the paper)")
    parser.add_argument("--limit", type=int, help="training images (default all 8,000)")
    parser.add_argument("--eval-limit", type=int, help="eval images (default all 2,000)")
    parser.add_argument("--methods", nargs="*", help="labels or method names to run (default all)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--ramp-epochs", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cost", type=int, metavar="ROUNDS", help="only time epochs, interleaved, ROUNDS rounds")
    parser.add_argument("--aa-limit", type=int, help="AutoAttack (APGD-CE + APGD-T) on only the first N eval images "
                        "(it is the slow part); 0 skips it")
    args = parser.parse_args()
    if args.cost:
        epoch_cost(args)
        return

    train = load_dataset("mnist-sample:train", limit=args.limit)
    evaluation = load_dataset("mnist-sample:eval", limit=args.eval_limit)
    threat = ThreatModel("linf", 0.3)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pays torch's one-time optimizer import before timing
    rows, teacher = [], None
    for label, name, options in RUNS:
        if args.methods and label not in args.methods and name not in args.methods:
            continue
        epochs = args.epochs
        if name == "free":
            epochs = args.free_epochs or max(1, args.epochs // options["replays"])
        options = dict(options)
        if name == "distill":
            teacher = teacher or _teacher(train, args, options["temperature"])
            options["teacher"] = teacher
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = MnistCNN()
        trainer = TRAINERS.create(name, **options)
        config = FitConfig(epochs=epochs, batch_size=100, lr=args.lr, schedule="cyclic", seed=args.seed,
                           ramp_epochs=args.ramp_epochs if trainer.adversarial else 0.0, check_size=500)
        start = time.perf_counter()
        result = fit(model, trainer, train, threat=threat, config=config, val=evaluation)
        seconds = time.perf_counter() - start
        model.load_state_dict(result.state_dict)
        model.eval()
        clean, robust = heldout_accuracy(model, evaluation, threat, steps=40, restarts=5, seed=args.seed)
        aa_data = evaluation if args.aa_limit is None else load_dataset("mnist-sample:eval", limit=args.aa_limit)
        aa = autoattack_accuracy(model, aa_data, threat, args.seed) if args.aa_limit != 0 else None
        per_epoch = sum(row["epoch_seconds"] for row in result.history) / epochs  # without the held-out check
        rows.append((label, epochs, seconds, per_epoch, clean, robust, aa))
        print(f"done {label}: {seconds:.0f} s, clean {clean:.4f}, PGD-40x5 {robust:.4f}", flush=True)

    base = next((r[3] for r in rows if r[0] == "standard"), None)
    print(f"\nMnistCNN on mnist-sample:train ({len(train)} images); eval on {len(evaluation)} images; Linf eps=0.3")
    print(f"{'method':<14}{'epochs':>7}{'time s':>9}{'s/epoch*':>9}{'x std':>7}{'clean':>8}{'PGD-40x5':>10}{'AA':>8}")
    for label, epochs, seconds, per_epoch, clean, robust, aa in rows:
        ratio = f"{per_epoch / base:.1f}" if base else "-"
        aa_text = f"{aa:.4f}" if aa is not None else "-"
        print(f"{label:<14}{epochs:>7}{seconds:>9.0f}{per_epoch:>9.1f}{ratio:>7}{clean:>8.4f}{robust:>10.4f}{aa_text:>8}")
    print("* training time per epoch, without the per-epoch held-out PGD check; 'time s' includes it")


def epoch_cost(args) -> None:
    """Median wall time of one training epoch per method, the methods interleaved round by round."""
    train = load_dataset("mnist-sample:train", limit=args.limit)
    threat = ThreatModel("linf", 0.3)
    runs = [r for r in RUNS if not args.methods or r[0] in args.methods or r[1] in args.methods]
    runs = [r for r in runs if r[1] != "distill"] + [r for r in runs if r[1] == "distill"]
    times: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    teacher = None
    warm_up = FitConfig(epochs=1, batch_size=100, check_size=0)
    fit(MnistCNN(), TRAINERS.create("standard"), load_dataset("mnist-sample:train", limit=200), config=warm_up)
    for round_ in range(args.cost):
        for label, name, options in runs if round_ % 2 == 0 else runs[::-1]:
            options = dict(options)
            if name == "distill":
                teacher = teacher or MnistCNN().eval()  # the teacher's weights do not change the cost
                options["teacher"] = teacher
            trainer = TRAINERS.create(name, **options)
            config = FitConfig(epochs=1, batch_size=100, lr=args.lr, schedule="constant", seed=args.seed + round_,
                               check_size=0)
            start = time.perf_counter()
            fit(MnistCNN(), trainer, train, threat=threat, config=config)
            times[label].append(time.perf_counter() - start)
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    base = statistics.median(times["standard"]) if times.get("standard") else None
    print(f"\nseconds per epoch on {len(train)} images (median of {args.cost} interleaved rounds)")
    print(f"{'method':<14}{'s/epoch':>9}{'x std':>7}")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:<14}{median:>9.1f}{median / base if base else float('nan'):>7.2f}")


def _teacher(train, args, temperature):
    """Defensive distillation's teacher: standard training at the distillation temperature."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed + 1)
        teacher = MnistCNN()
    config = FitConfig(epochs=args.epochs, batch_size=100, lr=args.lr, schedule="cyclic", seed=args.seed,
                       check_size=0)
    fit(teacher, TRAINERS.create("standard", temperature=temperature), train, config=config)
    return teacher.eval()


if __name__ == "__main__":
    main()
