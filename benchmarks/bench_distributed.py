"""One process against two under torchrun (gloo, one thread each): evaluation and certification speed-up, training.

Evaluation: `bastion evaluate` (the default suite) on the same points, once as a plain process and
once as `torchrun --nproc-per-node 2`; prints the wall time of each command, the speed-up, and
whether the two reports agree (every stage's result, the points each attack broke, the curve,
per-class results and the verdict; times and ids aside).

Certification: `bastion certify` on the same points, once as a plain process and once as
`torchrun --nproc-per-node 2`; prints the wall time of each command, of its certification phase
(the slowest rank's), the speed-ups, and checks that the rows are identical (seconds aside).

Training: `bastion train` for the same epochs with the same effective batch size, one process
with `--batch-size B` and two with `--batch-size B/2` each, for each of several seeds; prints clean
and PGD accuracy on the held-out images (mnist-sample:eval), the differences of the means over the
seeds in points, and the seed-to-seed range of one process (the noise the comparison sits in).

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py                   # every part
    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --part evaluate --eval-limit 300 --eval-batch 16
    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --part certify --limit 40 --samples 5000 --repeats 3
    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --part train --epochs 2 --batch-size 64 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bastion.certify.dataset import group_size
from bastion.distributed import shard_chunks

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def launch(processes: int, argv: list[str]) -> float:
    """Run `bastion ARGV` as one plain process or under torchrun; the wall time in seconds."""
    prefix = [sys.executable, "-m", "bastion"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-addr",
        "127.0.0.1", "--master-port", str(_port()), "-m", "bastion"]
    start = time.perf_counter()
    done = subprocess.run([*prefix, *argv], env=ENV, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bastion {' '.join(argv)} failed on {processes} process(es):\n{done.stderr[-2000:]}")
    return seconds


def _comparable(report: dict[str, Any]) -> Any:
    """A report without what differs between two runs of the same evaluation (times, ids, the command, --out)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k not in ("seconds", "run_id", "created_at", "provenance", "out")}
        return [strip(v) for v in value] if isinstance(value, list) else value
    return strip(report)


def evaluate(args: argparse.Namespace, work: Path) -> None:
    argv = ["evaluate", "--model", args.eval_model, "--data", "mnist-sample", "--eps", str(args.eval_eps),
            "--limit", str(args.eval_limit), "--batch-size", str(args.eval_batch), "--no-db", "--quiet"]
    walls: dict[int, list[float]] = {1: [], 2: []}
    reports = {}
    for repeat in range(args.repeats):
        for processes in (1, 2):
            out = work / f"evaluate{processes}-{repeat}"
            walls[processes].append(launch(processes, [*argv, "--out", str(out)]))
            reports[processes] = json.loads((out / "report.json").read_text())
    wall = {p: statistics.median(walls[p]) for p in (1, 2)}
    summary = reports[1]["summary"]
    print(f"evaluate {args.eval_model} eps={args.eval_eps}: {args.eval_limit} points in chunks of {args.eval_batch}, "
          f"default suite; robust accuracy {summary['robust_accuracy']:.2%}; median of {args.repeats} run(s)")
    print(f"{'processes':>9}  {'command s':>9}")
    for processes in (1, 2):
        print(f"{processes:>9}  {wall[processes]:>9.1f}")
    print(f"speed-up: {wall[1] / wall[2]:.2f}x; reports identical: "
          f"{_comparable(reports[1]) == _comparable(reports[2])}", flush=True)


def certify(args: argparse.Namespace, work: Path) -> None:
    argv = ["certify", "--model", args.model, "--data", "mnist-sample", "--limit", str(args.limit), "--n0",
            str(args.n0), "--samples", str(args.samples), "--batch-size", str(args.cert_batch), "--no-db", "--quiet"]
    walls: dict[int, list[float]] = {1: [], 2: []}
    phases: dict[int, list[float]] = {1: [], 2: []}
    rows = {}
    chunk = group_size(args.n0, args.cert_batch)
    for repeat in range(args.repeats):  # interleaved, so that a change of the machine's load hits both alike
        for processes in (1, 2):
            out = work / f"certify{processes}-{repeat}"
            walls[processes].append(launch(processes, [*argv, "--out", str(out)]))
            report = json.loads((out / "certify.json").read_text())
            rows[processes] = [{k: v for k, v in r.items() if k != "seconds"} for r in report["rows"]]
            seconds = [float(r["seconds"]) for r in report["rows"]]
            phases[processes].append(max(sum(seconds[p] for p in shard_chunks(len(seconds), chunk, rank, processes))
                                         for rank in range(processes)))
    print(f"certify {args.model}: {args.limit} points, n0={args.n0}, n={args.samples}, batch {args.cert_batch} "
          f"(chunks of {chunk} points), median of {args.repeats} interleaved run(s)")
    print(f"{'processes':>9}  {'command s':>9}  {'certify s':>9}")
    wall, phase = ({p: statistics.median(v[p]) for p in (1, 2)} for v in (walls, phases))
    for processes in (1, 2):
        print(f"{processes:>9}  {wall[processes]:>9.1f}  {phase[processes]:>9.1f}")
    print(f"speed-up: command {wall[1] / wall[2]:.2f}x, certification phase (slowest rank) {phase[1] / phase[2]:.2f}x; "
          f"rows identical: {rows[1] == rows[2]}")


def train(args: argparse.Namespace, work: Path) -> None:
    if args.batch_size % 2:
        raise SystemExit("--batch-size must be even (two processes take half each)")
    base = ["train", "--model", args.train_model, "--method", args.method, "--eps", str(args.eps), "--steps",
            str(args.steps), "--epochs", str(args.epochs), "--data", "mnist-sample:train", "--check-size", "0",
            "--eval-steps", str(args.eval_steps), "--no-db", "--quiet"]
    if args.train_limit:
        base += ["--limit", str(args.train_limit)]
    print(f"train {args.train_model} --method {args.method} eps={args.eps} steps={args.steps}, {args.epochs} epochs, "
          f"effective batch {args.batch_size}; held-out mnist-sample:eval (2,000 images), PGD-{args.eval_steps}")
    print(f"{'seed':>4}  {'processes':>9}  {'per-proc batch':>14}  {'clean':>6}  {'PGD':>6}  {'wall s':>6}")
    found: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for seed in args.seeds:
        for processes in (1, 2):
            out = work / f"train{processes}-{seed}"
            batch = args.batch_size // processes
            wall = launch(processes, [*base, "--seed", str(seed), "--batch-size", str(batch), "--out", str(out)])
            m = json.loads((out / "model_card.json").read_text())["metrics"]
            found[processes].append((m["clean_accuracy"], m["pgd_accuracy"]))
            print(f"{seed:>4}  {processes:>9}  {batch:>14}  {m['clean_accuracy']:>6.2%}  {m['pgd_accuracy']:>6.2%}  "
                  f"{wall:>6.1f}", flush=True)
    means = {p: [100 * statistics.mean(v[i] for v in found[p]) for i in (0, 1)] for p in (1, 2)}
    clean, robust = (means[2][i] - means[1][i] for i in (0, 1))
    spread = [100 * (max(v[i] for v in found[1]) - min(v[i] for v in found[1])) for i in (0, 1)]
    print(f"mean over {len(args.seeds)} seed(s): 1 process clean {means[1][0]:.2f}% PGD {means[1][1]:.2f}%; "
          f"2 processes clean {means[2][0]:.2f}% PGD {means[2][1]:.2f}%")
    print(f"2 - 1 processes: clean {clean:+.2f} points, PGD {robust:+.2f} points (bar: within 1 point: "
          f"{abs(clean) <= 1 and abs(robust) <= 1}); seed-to-seed range of 1 process: clean {spread[0]:.2f}, "
          f"PGD {spread[1]:.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["evaluate", "certify", "train", "all"], default="all")
    parser.add_argument("--eval-model", default="zoo:mnist-cnn-at", help="model evaluated")
    parser.add_argument("--eval-eps", type=float, default=0.3)
    parser.add_argument("--eval-limit", type=int, default=300, help="points evaluated")
    parser.add_argument("--eval-batch", type=int, default=16, help="evaluate --batch-size (the chunk size)")
    parser.add_argument("--model", default="zoo:mnist-cnn", help="model certified")
    parser.add_argument("--limit", type=int, default=40, help="points certified")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--samples", type=int, default=5000, help="estimation samples per point")
    parser.add_argument("--cert-batch", type=int, default=1000, help="certify --batch-size")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved evaluation and certification runs (median)")
    parser.add_argument("--train-model", default="bastion.models.nets:MnistCNN")
    parser.add_argument("--method", default="pgd-at")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=3, help="attack steps of training")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="effective batch size")
    parser.add_argument("--train-limit", type=int, help="training images (default all 8000)")
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (each run twice)")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        if args.part in ("evaluate", "all"):
            evaluate(args, Path(folder))
        if args.part in ("certify", "all"):
            certify(args, Path(folder))
        if args.part in ("train", "all"):
            train(args, Path(folder))
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
