"""Same answers after the stages rewrite: robust accuracy and verdict of this tree against an earlier revision.

Each model is evaluated by both source trees with the default suite on the same points, side by side
(one single-thread process per core, so both see the same machine load), and the table prints the
robust accuracy, verdict and wall time of each. The baseline tree is a `git worktree` of `--baseline`
(default: the last commit before the stages rewrite), made in a temporary folder and removed after.

    OMP_NUM_THREADS=1 python benchmarks/bench_stages.py --limit 500
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = [
    ("zoo:mnist-cnn", []),
    ("zoo:mnist-cnn-at", []),
    ("zoo:mnist-cnn", ["--defense", "jpeg:quality=75"]),
]


def evaluate(src: Path, model: str, extra: list[str], limit: int, out: Path, core: int | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "bastion", "evaluate", "--model", model, "--data", "mnist-sample:eval",
               "--eps", "0.3", "--limit", str(limit), "--out", str(out), "--no-db", *extra]
    if core is not None and sys.platform.startswith("linux"):
        command = ["taskset", "-c", str(core), *command]
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, out: Path, start: float) -> dict:
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"evaluation failed ({process.returncode}): {err.strip().splitlines()[-1:]}")
    report = json.loads((out / "report.json").read_text())
    return {"robust": report["summary"]["robust_accuracy"], "verdict": report["verdict"]["verdict"],
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--baseline", default="b0484de", help="git revision to compare against")
    parser.add_argument("--sequential", action="store_true", help="one evaluation at a time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.baseline],
                       check=True)
        try:
            rows = []
            for model, extra in MODELS:
                name = model + (" " + " ".join(extra) if extra else "")
                outs = {side: Path(scratch) / side / name.replace(":", "_").replace(" ", "_").replace("=", "_")
                        for side in ("baseline", "stages")}
                trees = {"baseline": base / "src", "stages": ROOT / "src"}
                results = {}
                if args.sequential:
                    for i, side in enumerate(trees):
                        start = time.perf_counter()
                        results[side] = finish(evaluate(trees[side], model, extra, args.limit, outs[side], i),
                                               outs[side], start)
                else:
                    start = time.perf_counter()
                    running = {side: evaluate(trees[side], model, extra, args.limit, outs[side], i)
                               for i, side in enumerate(trees)}
                    results = {side: finish(p, outs[side], start) for side, p in running.items()}
                rows.append((name, results))
                b, s = results["baseline"], results["stages"]
                print(f"{name:38s} baseline {b['robust']:7.2%} {b['verdict']:10s} {b['seconds']:7.1f}s | "
                      f"stages {s['robust']:7.2%} {s['verdict']:10s} {s['seconds']:7.1f}s | "
                      f"diff {100 * (s['robust'] - b['robust']):+.2f} points", flush=True)
            worst = max(abs(r["stages"]["robust"] - r["baseline"]["robust"]) for _, r in rows)
            same = all(r["stages"]["verdict"] == r["baseline"]["verdict"] for _, r in rows)
            print(f"largest difference {100 * worst:.2f} points (bar 0.5); identical verdicts: {same}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    main()
