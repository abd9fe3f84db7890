"""Issue 15: `bastion train` and `bastion evaluate` killed (SIGKILL) ten times at random moments, then --resume:
the same results as an uninterrupted run, and no temporary file left behind.

Each run is a forked process running `bastion.cli.main`, killed at a moment drawn by a seeded RNG within the
measured duration of an uninterrupted run (forked, so the kills land in the work, not in importing torch).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from bastion.cli import main

pytestmark = pytest.mark.slow

TINY = f"{Path(__file__).parents[1] / 'train' / 'tiny.py'}:mlp"
TRAIN = ["train", "--model", TINY, "--method", "pgd-at", "--eps", "0.1", "--steps", "2", "--epochs", "3",
         "--data", "mnist-sample:train", "--limit", "192", "--batch-size", "32", "--check-size", "32",
         "--check-steps", "1", "--val-limit", "64", "--eval-steps", "2", "--quiet", "--no-db"]
EVALUATE = ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "0.1", "--limit", "8",
            "--batch-size", "4", "--suite", "pgd", "--steps", "3", "--restarts", "1", "--curve-points", "2",
            "--gallery", "2", "--quiet", "--no-db"]
KILLS = 10


def _child(argv: list[str]) -> None:
    """A forked `bastion ...`: the parent already imported torch, so it starts in milliseconds."""
    torch.set_num_threads(1)
    os._exit(main(argv))


def _start(argv: list[str]) -> Any:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    process = multiprocessing.get_context("fork").Process(target=_child, args=(argv,))
    process.start()
    return process


def _finish(argv: list[str]) -> float:
    start = time.monotonic()
    process = _start(argv)
    process.join(timeout=300)
    assert process.exitcode == 0, f"bastion {' '.join(argv)} exited with {process.exitcode}"
    return time.monotonic() - start


def _kill_and_resume(argv: list[str], out: Path, resume_args: Any, seed: int) -> list[Path]:
    """Measure an uninterrupted run (OUT/reference); then KILLS trials, each a run into OUT/killed-i SIGKILLed at a
    random moment within 80% of the shortest run seen so far and resumed to the end. Returns the trials' folders.

    A first run in this process imports and loads what the command needs, so the forked runs spend their time
    on the work itself and the kills land in it. A trial whose run ends before its kill is timed: the window
    shrinks to it, so a reference run slowed by a busy machine cannot make every later kill miss.
    """
    assert main([*argv, "--out", str(out / "warm-up")]) == 0
    window = _finish([*argv, "--out", str(out / "reference")])
    rng, landed, folders = random.Random(seed), 0, []
    for trial in range(KILLS):
        folder = out / f"killed-{trial}"
        start = time.monotonic()
        process = _start([*argv, "--out", str(folder)])
        process.join(timeout=rng.uniform(0.0, 0.8 * window))
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
            landed += 1
        else:
            window = min(window, time.monotonic() - start)
        process.join(timeout=60)
        _finish([*argv, "--out", str(folder), *resume_args(folder)])
        folders.append(folder)
    assert landed >= KILLS // 2, f"only {landed} of {KILLS} kills hit a running process"
    return folders


def _left_over(folder: Path, expected: set[str]) -> set[str]:
    return {p.name for p in folder.iterdir()} - expected


def test_train_killed_ten_times_resumes_to_the_same_weights(tmp_path):
    def resume(out: Path) -> list[str]:
        return ["--resume"] if (out / "checkpoint.pt").exists() else []

    reference = tmp_path / "reference"
    for folder in _kill_and_resume(TRAIN, tmp_path, resume, seed=15):
        expected = {"checkpoint.pt", "model.pt", "model.safetensors", "model_card.json", "training.html"}
        assert _left_over(folder, expected) == set()  # no .model.pt.XXXX.tmp left by a kill mid-write
        weights = torch.load(reference / "model.pt", weights_only=True)
        resumed = torch.load(folder / "model.pt", weights_only=True)
        assert weights.keys() == resumed.keys() and all(torch.equal(weights[k], resumed[k]) for k in weights)
        cards = [json.loads((d / "model_card.json").read_text()) for d in (reference, folder)]
        for key in ("clean_accuracy", "pgd_accuracy", "selected_epoch"):
            assert cards[0]["metrics"][key] == cards[1]["metrics"][key], folder
        rows = [[{k: v for k, v in row.items() if "seconds" not in k} for row in card["history"]] for card in cards]
        assert rows[0] == rows[1], folder


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
    folders = _kill_and_resume(EVALUATE, tmp_path, lambda out: ["--resume"], seed=16)
    expected = _results(json.loads((tmp_path / "reference" / "report.json").read_text()))
    for folder in folders:
        assert _left_over(folder, {"report.json", "report.html"}) == set()  # no state.pt or .tmp left
        assert _results(json.loads((folder / "report.json").read_text())) == expected, folder
