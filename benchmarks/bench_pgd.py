"""PGD's overhead over a bare attack loop, measured in one run on the same model and data.

Prints PGD's wall time divided by that of a hand-written loop doing the same number of forward and
backward passes on the same batch (the bar: at most 1.10), and what early stopping saves in passes.
Run with `make bench`. Convention: images 8000-9999 of mnist-sample are the evaluation split.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bastion import PGD, ThreatModel
from bastion.data import load_dataset
from bastion.models import attack_mode, load_zoo_model


def bare_loop(model, x, y, eps, alpha, steps, extra_forwards):
    """The loop everyone writes by hand: no bookkeeping, no restarts, no checks."""
    delta = torch.empty_like(x).uniform_(-eps, eps)
    x_adv = (x + delta).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    with torch.no_grad():
        for _ in range(extra_forwards):
            model(x_adv)
    return x_adv


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="evaluation points (batch size)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.3)
    args = parser.parse_args()

    model = load_zoo_model("mnist-cnn")
    data = load_dataset("mnist-sample:eval", limit=args.n)
    x, y = data.batch(slice(None))
    threat = ThreatModel("linf", args.eps)
    pgd = PGD(steps=args.steps, early_stop=False)
    probe = pgd(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    passes = probe.passes
    extra_forwards = passes.forward - passes.backward
    alpha = pgd.step_size_fraction * args.eps

    pgd_times, bare_times = [], []
    with attack_mode(model):
        timed(lambda: bare_loop(model, x, y, args.eps, alpha, args.steps, extra_forwards))  # warm-up
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            pgd_times.append(timed(lambda: pgd(model, x, y, threat, generator=torch.Generator().manual_seed(0))))
            bare_times.append(timed(lambda: bare_loop(model, x, y, args.eps, alpha, args.steps, extra_forwards)))
    ratio = statistics.median(p / b for p, b in zip(pgd_times, bare_times, strict=True))

    early = PGD(steps=args.steps)(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    print(f"PGD-{args.steps} Linf eps={args.eps} on {args.n} points of mnist-sample:eval, zoo:mnist-cnn, "
          f"{torch.get_num_threads()} threads")
    print(f"passes per run: {passes.forward} forward, {passes.backward} backward (bare loop: the same)")
    print(f"{'':<28}{'median s':>10}")
    print(f"{'bastion PGD (no early stop)':<28}{statistics.median(pgd_times):>10.3f}")
    print(f"{'bare loop':<28}{statistics.median(bare_times):>10.3f}")
    print(f"wall-time ratio PGD / bare loop (median of {args.repeats} paired runs): {ratio:.3f}  (bar: <= 1.10)")
    saved = 1 - early.passes.backward_samples / passes.backward_samples
    print(f"early stopping (the default): {early.passes.backward_samples} instead of {passes.backward_samples} "
          f"backward samples ({saved:.0%} saved), same success: {bool(torch.equal(early.success, probe.success))}")


if __name__ == "__main__":
    main()
