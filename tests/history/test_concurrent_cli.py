"""Eight `bastion evaluate` processes recording into one history database at the same moment lose no run."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from bastion.history import RunStore
from tests.history.test_cli_gate import FAST


def _evaluate(db: str, out: str, seed: int, start: Any, codes: Any) -> None:
    import torch

    from bastion.cli import main

    torch.set_num_threads(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the summary tables of eight processes would interleave in pytest's output
    start.wait()
    codes[seed] = main(["evaluate", "--model", "zoo:mnist-cnn", *FAST, "--limit", "12", "--no-fgsm", "--seed",
                        str(seed % 2), "--out", out, "--db", db])


def test_eight_concurrent_evaluations_lose_no_run(tmp_path: Path) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    context = multiprocessing.get_context("fork")  # real processes running the real CLI, without 8 torch imports
    workers, db = 8, str(tmp_path / "shared" / "bastion.db")
    start, codes = context.Barrier(workers), context.Array("i", [-1] * workers)
    processes = [context.Process(target=_evaluate, args=(db, str(tmp_path / f"run{i}"), i, start, codes))
                 for i in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * workers
    assert list(codes) == [0] * workers
    runs = RunStore(db).runs()
    assert len(runs) == workers and len({r.run_id for r in runs}) == workers
    assert sorted(Path(r.out_dir or "").name for r in runs) == sorted(f"run{i}" for i in range(workers))
    assert all(r.metrics["clean_accuracy"] > 0.5 and "robust_accuracy" in r.metrics for r in runs)
