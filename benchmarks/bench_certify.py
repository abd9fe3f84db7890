"""Randomized smoothing's noise-sample throughput against a bare batched forward loop, in one run.

Prints certify's samples per second (`Smooth.certify_many`: noise drawing, forward passes, counting
and the confidence bounds) divided by that of a bare loop of forward passes on a fixed batch of the
same size (the bar: at least 0.90), and, for reference, by the loop most code writes by hand
(Cohen et al.'s: repeat the image, add fresh noise, forward, count). Repeats are interleaved so
both see the same machine load; the ratio is the median of the per-repeat ratios, in wall time and in
this thread's CPU time (steadier when other jobs share the machine).
Convention: images 8000-9999 of mnist-sample are the evaluation split.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bastion.certify import Smooth
from bastion.data import load_dataset
from bastion.models import ZOO, attack_mode, load_zoo_model


def bare_forward(model, batch, batches):
    """Forward passes only: the ceiling any certifier can reach."""
    with torch.inference_mode():
        for _ in range(batches):
            model(batch).argmax(1)


def hand_written(model, x, num, batch_size, sigma, num_classes):
    """Cohen et al.'s reference `_sample_noise`, with bincount instead of a Python counting loop."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    with torch.inference_mode():
        left = num
        while left > 0:
            size = min(batch_size, left)
            batch = x.repeat((size, 1, 1, 1))
            counts += torch.bincount(model(batch + torch.randn_like(batch) * sigma).argmax(1), minlength=num_classes)
            left -= size
    return counts


def timed(fn):
    """Wall time and this thread's CPU time (the latter is steadier on a machine shared with other jobs)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sigma", type=float, default=0.5)
    args = parser.parse_args()

    name = "mnist-cnn-noise" if "mnist-cnn-noise" in ZOO else "mnist-cnn"
    model = load_zoo_model(name)
    x, _ = load_dataset("mnist-sample:eval", limit=args.images).batch(slice(None))
    smooth = Smooth(model, 10, args.sigma)
    samples = args.images * (args.n0 + args.n)
    batches = -(-samples // args.batch_size)
    batch = (x[:1] + args.sigma * torch.randn(args.batch_size, *x.shape[1:])).contiguous()

    def certify():
        smooth.certify_many(x, args.n0, args.n, 0.001, batch_size=args.batch_size, seed=0)

    def by_hand():
        for image in x:
            hand_written(model, image[None], args.n0, args.batch_size, args.sigma, 10)
            hand_written(model, image[None], args.n, args.batch_size, args.sigma, 10)

    times: dict[str, list[tuple[float, float]]] = {"certify": [], "bare": [], "hand": []}
    with attack_mode(model):
        certify(), bare_forward(model, batch, 2)  # warm-up
        for _ in range(args.repeats):  # interleaved, so all three see the same machine load
            times["certify"].append(timed(certify))
            times["bare"].append(timed(lambda: bare_forward(model, batch, batches)))
            times["hand"].append(timed(by_hand))
    done = {"certify": samples, "bare": batches * args.batch_size, "hand": samples}
    print(f"zoo:{name}, {args.images} images of mnist-sample:eval, n0={args.n0}, n={args.n}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats")
    print(f"{'median samples/s':<34}{'wall':>10}{'CPU':>10}")
    labels = {"certify": "bastion certify_many", "bare": "bare forward loop (fixed batch)",
              "hand": "hand-written Cohen et al. loop"}
    rates = {k: [(done[k] / w, done[k] / c) for w, c in v] for k, v in times.items()}
    for key, label in labels.items():
        print(f"{label:<34}{statistics.median(r[0] for r in rates[key]):>10,.0f}"
              f"{statistics.median(r[1] for r in rates[key]):>10,.0f}")
    for other, bar in (("bare", "  (bar: >= 0.90)"), ("hand", "")):
        wall, cpu = (statistics.median(c[i] / b[i] for c, b in zip(rates["certify"], rates[other], strict=True))
                     for i in (0, 1))
        print(f"ratio certify / {labels[other]} (median of paired runs): wall {wall:.3f}, CPU {cpu:.3f}{bar}")

if __name__ == "__main__":
    main()
