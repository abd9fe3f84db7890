"""`torchrun -m bastion train`: DDP on 2 gloo processes, rank 0 writes, a 1-process checkpoint resumes on 2."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bastion.cli import main
from bastion.distributed import teardown
from bastion.threat import ThreatModel
from bastion.train import PGDAT, TRADES
from bastion.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_atomic
from tests.torchrun import torchrun
from tests.train.test_cli import FAST, TINY
from tests.train.tiny import seeded_mlp


def test_a_one_process_checkpoint_resumes_on_two_processes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["train", "--model", TINY, "--method", "pgd-at", "--eps", "0.1", "--steps", "2", "--epochs", "2",
            "--out", str(out), "--no-db", *FAST]
    assert main(argv) == 0  # one process, no torchrun: as before
    saved = load_checkpoint(out / CHECKPOINT_NAME)
    assert saved["world_size"] == 1
    # Pretend the run stopped after its first epoch; continue it on two processes.
    saved.update(epoch=1, history=saved["history"][:1])
    save_atomic(saved, out / CHECKPOINT_NAME)
    for name in ("model.pt", "model_card.json"):
        (out / name).unlink()
    done = torchrun(2, [*argv, "--resume"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming with effective batch size 128 (64 per process x 2 processes)" in done.stdout
    assert done.stdout.count("held-out clean accuracy") == 1  # rank 0 alone evaluates and writes
    card = json.loads((out / "model_card.json").read_text())
    assert [row["epoch"] for row in card["history"]] == [1.0, 2.0]
    assert load_checkpoint(out / CHECKPOINT_NAME)["world_size"] == 2
    assert 0 <= card["metrics"]["pgd_accuracy"] <= card["metrics"]["clean_accuracy"] <= 1
    # A group restarted by torchrun --max-restarts continues from the checkpoint without --resume.
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    capsys.readouterr()
    assert main(argv) == 0 and "resuming with effective batch size 64" in capsys.readouterr().out


def test_attacks_inside_training_bypass_the_ddp_wrapper(tmp_path: Path):
    """The inner PGD runs on `ddp.module`: no forward pass of the wrapper arms the all-reduce for it."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        _count_wrapper_calls()
    finally:
        # The wrapper and gloo's work objects are freed (garbage collected) before the group is destroyed:
        # a DDP freed after destroy_process_group can wait forever in its destructor (it hung this test
        # once in a loop of the distributed tests).
        teardown()


def _count_wrapper_calls() -> None:
    ddp = DistributedDataParallel(seeded_mlp())
    calls: list[int] = []
    ddp.register_forward_pre_hook(lambda module, args: calls.append(1))
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    PGDAT(steps=3).step(ddp, optimizer, x, y, ThreatModel("linf", 0.1))
    assert len(calls) == 1  # the training loss only, not the 3 attack steps
    calls.clear()
    TRADES(steps=3).step(ddp, optimizer, x, y, ThreatModel("linf", 0.1))
    assert len(calls) == 2  # clean and adversarial logits of the loss; target and attack bypass it
