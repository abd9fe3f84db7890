"""Issue 15: `bastion train` and `bastion evaluate` killed (SIGKILL) ten times at random moments, then --resume:
the same results as an uninterrupted run, and no temporary file left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.slow

TINY = f"{Path(__file__).parents[1] / 'train' / 'tiny.py'}:mlp"
TRAIN = ["train", "--model", TINY, "--method", "pgd-at", "--eps", "0.1", "--steps", "2", "--epochs", "4",
         "--data", "mnist-sample:train", "--limit", "256", "--batch-size", "32", "--check-size", "32",
         "--check-steps", "1", "--val-limit", "64", "--eval-steps", "2", "--quiet", "--no-db"]
EVALUATE = ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "0.1", "--limit", "24",
            "--batch-size", "8", "--suite", "pgd", "--steps", "3", "--restarts", "1", "--curve-points", "2",
            "--gallery", "2", "--quiet", "--no-db"]
KILLS = 10


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-m", "bastion", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _finish(argv: list[str]) -> float:
    start = time.monotonic()
    process = _start(argv)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    return time.monotonic() - start


def _kill_and_resume(argv: list[str], out: Path, resume_args: Any, seed: int) -> tuple[float, int]:
    """Measure an uninterrupted run in OUT/reference, then run into OUT/killed, SIGKILLed KILLS times, and resume."""
    duration = _finish([*argv, "--out", str(out / "reference")])
    rng, landed = random.Random(seed), 0
    for _ in range(KILLS):
        process = _start([*argv, "--out", str(out / "killed"), *resume_args(out / "killed")])
        time.sleep(rng.uniform(0.0, duration))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            landed += 1
        process.communicate(timeout=60)
    _finish([*argv, "--out", str(out / "killed"), *resume_args(out / "killed")])
    return duration, landed


def _left_over(folder: Path, expected: set[str]) -> set[str]:
    return {p.name for p in folder.iterdir()} - expected


def test_train_killed_ten_times_resumes_to_the_same_weights(tmp_path):
    def resume(out: Path) -> list[str]:
        return ["--resume"] if (out / "checkpoint.pt").exists() else []

    _, landed = _kill_and_resume(TRAIN, tmp_path, resume, seed=15)
    assert landed >= 1  # later kills may come after the resumed run finished: then it just resumes a finished run
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    expected = {"checkpoint.pt", "model.pt", "model_card.json", "training.html"}
    assert _left_over(killed, expected) == set()  # no .model.pt.XXXX.tmp left by a kill mid-write
    a, b = (torch.load(d / "model.pt", weights_only=True) for d in (reference, killed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cards = [json.loads((d / "model_card.json").read_text()) for d in (reference, killed)]
    for key in ("clean_accuracy", "pgd_accuracy", "selected_epoch"):
        assert cards[0]["metrics"][key] == cards[1]["metrics"][key]
    strip = [{k: v for k, v in row.items() if "seconds" not in k} for card in cards for row in card["history"]]
    assert strip[: len(strip) // 2] == strip[len(strip) // 2 :]


def _results(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs between runs of the same evaluation (times, ids, the command)."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if "second" not in k and k not in ("resume",)}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    keep = ("summary", "clean", "attacks", "curve", "per_class", "gallery", "warnings", "verdict")
    return {k: clean(report.get(k)) for k in keep}


def test_evaluate_killed_ten_times_resumes_to_the_same_report(tmp_path):
    _, landed = _kill_and_resume(EVALUATE, tmp_path, lambda out: ["--resume"], seed=16)
    assert landed >= 1
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _left_over(killed, {"report.json", "report.html"}) == set()  # no state.pt, state.json or .tmp left
    reports = [json.loads((d / "report.json").read_text()) for d in (reference, killed)]
    assert _results(reports[0]) == _results(reports[1])
