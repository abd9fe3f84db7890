"""Detectors on the bundled MNIST model: scoring speed, and the calibrated false-positive rate over random splits.

The conformal threshold promises a false-positive rate of at most the target on new clean inputs, on
average over calibration sets. This scores all 10,000 bundled MNIST images once per detector, then
draws many random calibration / held-out splits and reports the held-out rate's mean and spread.

    OMP_NUM_THREADS=1 python benchmarks/bench_detect.py [--fpr 0.05] [--n-cal 1000] [--splits 200]
"""

from __future__ import annotations

import argparse
import time

import torch

from bastion.data import load_dataset
from bastion.detect import DETECTORS, conformal_threshold, make_detector, score_batches
from bastion.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fpr", type=float, default=0.05)
    parser.add_argument("--n-cal", type=int, default=1000)
    parser.add_argument("--splits", type=int, default=200)
    args = parser.parse_args()
    model = load_model("zoo:mnist-cnn", device="cpu").module
    data = load_dataset("mnist-sample:all")
    x, _ = data.batch(torch.arange(len(data)))
    generator = torch.Generator().manual_seed(0)
    print(f"{'detector':<18} {'images/s':>9} {'held-out FPR mean':>18} {'std':>6} {'max':>6}  (target {args.fpr:g})")
    for name in DETECTORS:
        start = time.perf_counter()
        scores = score_batches(make_detector(name), model, x, batch_size=500)
        speed = len(x) / (time.perf_counter() - start)
        rates = []
        for _ in range(args.splits):
            order = torch.randperm(len(scores), generator=generator)
            threshold = conformal_threshold(scores[order[: args.n_cal]], args.fpr)
            rates.append(float((scores[order[args.n_cal :]] > threshold).float().mean()))
        r = torch.tensor(rates)
        print(f"{name:<18} {speed:>9.0f} {float(r.mean()):>18.4f} {float(r.std()):>6.4f} {float(r.max()):>6.4f}")


if __name__ == "__main__":
    main()
