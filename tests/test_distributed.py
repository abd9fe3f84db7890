"""`bastion.distributed`: a world of one without a launcher, devices refused, and every command ending cleanly."""

from __future__ import annotations

import gc
import io
import os
import threading
import weakref
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm._monitor import TMonitor
from tqdm.auto import tqdm

from bastion.distributed import World, all_reduce_sum, broadcast_object, gather_by_index, setup, world
from bastion.errors import InputError
from bastion.exiting import clean_exit
from tests.torchrun import torchrun


def test_without_torchrun_nothing_is_initialized(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert setup("cpu") == World(device="cpu") and world() == World()
    assert gather_by_index([(2, "c"), (0, "a"), (1, "b")]) == ["a", "b", "c"]
    assert broadcast_object({"x": 1}) == {"x": 1} and all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    with pytest.raises(RuntimeError, match="same index"):
        gather_by_index([(0, "a"), (0, "b")])


@pytest.mark.parametrize(("device", "message"), [("cuda:1", "each process takes cuda:LOCAL_RANK"),
                                                 ("cuda", "CUDA is not available")])
def test_a_device_the_ranks_cannot_share_is_refused_in_one_line(monkeypatch, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(InputError, match=message):
        setup(device)


def test_clean_exit_leaves_the_group_and_frees_what_holds_it_while_the_interpreter_is_whole(tmp_path):
    """What aborted a rank at exit (SIGABRT after the work was done): a DDP wrapper in a reference cycle, freed
    only at interpreter shutdown with gloo's work objects, and tqdm's monitor thread. `clean_exit` frees both."""
    gc.disable()  # only the teardown's own collection may free the cycle
    try:
        dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
        with clean_exit():
            ddp = DistributedDataParallel(nn.Linear(4, 2))
            ddp(torch.rand(3, 4)).sum().backward()  # an all-reduce through gloo
            freed = weakref.ref(ddp)
            cycle: list[object] = [ddp]
            cycle.append(cycle)  # held by a cycle alone, as a training run's state can be
            del ddp, cycle
            tqdm(total=1, file=io.StringIO()).close()  # a bar starts tqdm's monitor thread
            assert tqdm.monitor is not None and freed() is not None
        assert not dist.is_initialized() and freed() is None
        assert tqdm.monitor is None and not [t for t in threading.enumerate() if isinstance(t, TMonitor)]
    finally:
        gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()


def test_an_error_leaves_the_group_without_waiting_for_the_others(tmp_path, monkeypatch):
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    waited: list[int] = []
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: waited.append(1))
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)  # as if another rank were still running
    with pytest.raises(InputError), clean_exit():
        raise InputError("a user's mistake on this rank")
    assert not dist.is_initialized() and waited == []  # no barrier the other ranks may never reach
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store2"), 1), rank=0, world_size=1)
    with clean_exit():
        pass
    assert not dist.is_initialized() and waited == [1]  # a finished command waits for every rank first


#: Runs of each distributed command here; the check of issue 26 repeats them 50 times (BASTION_REPEAT=50).
REPEAT = int(os.environ.get("BASTION_REPEAT", "0"))


@pytest.mark.parametrize("command", ["certify", pytest.param("train", marks=pytest.mark.slow),
                                     pytest.param("evaluate", marks=pytest.mark.slow)])
def test_every_distributed_command_ends_cleanly_run_after_run(tmp_path, command):
    """Issue 26: a rank aborted at exit in 1 of 18 runs. Each command on two processes ends with 0 every time.

    In the suite the cheapest (certify, about 4 s a run, mostly starting three processes) runs 3 times;
    train and evaluate run once each in their own test_distributed.py, and here only when
    BASTION_REPEAT (the count of all three) is set.
    """
    if command != "certify" and not REPEAT:
        pytest.skip("repeated only with BASTION_REPEAT=N (their own test_distributed.py runs them once)")
    tiny = f"{Path(__file__).parent / 'train' / 'tiny.py'}:mlp"
    argv = {
        "train": ["train", "--model", tiny, "--method", "standard", "--epochs", "1", "--data", "mnist-sample:train",
                  "--limit", "64", "--check-size", "16", "--val-limit", "16", "--batch-size", "16"],
        "evaluate": ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "8", "--suite",
                     "pgd", "--steps", "1", "--restarts", "1", "--curve-points", "0", "--batch-size", "4"],
        "certify": ["certify", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "4", "--n0", "4",
                    "--samples", "8", "--batch-size", "4"],
    }[command]
    repeat = REPEAT or 3
    for run in range(repeat):
        done = torchrun(2, [*argv, "--out", str(tmp_path / f"run-{run}"), "--no-db", "--quiet"], cwd=tmp_path)
        assert done.returncode == 0 and "terminate called" not in done.stderr, (run, done.stderr[-2000:])
