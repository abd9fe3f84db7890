"""Issue 15: `bastion train` never replaces an earlier run unasked, and a changed setting under --resume is named."""

from __future__ import annotations

import json

import pytest
import torch

from bastion.cli import main
from bastion.data import load_dataset
from bastion.train import TRAINERS, FitConfig, fit
from bastion.train.card import outcome_warnings
from bastion.train.schedule import build_schedule

from .test_cli import FAST, TINY
from .tiny import seeded_mlp

ARGS = ["train", "--model", TINY, "--method", "pgd-at", "--eps", "0.1", "--steps", "1", "--epochs", "1", *FAST,
        "--check-size", "0", "--no-db"]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_train_refuses_to_replace_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "at"
    assert main([*ARGS, "--out", str(out)]) == 0
    before = (out / "model.pt").read_bytes()
    assert main([*ARGS, "--out", str(out), "--lr", "0.01"]) == 2
    assert "already holds model.pt and checkpoint.pt" in _error(capsys)
    assert (out / "model.pt").read_bytes() == before
    assert main([*ARGS, "--out", str(out), "--resume", "--overwrite"]) == 2
    assert main([*ARGS, "--out", str(out), "--overwrite", "--epochs", "0"]) == 2  # a mistake removes nothing
    assert (out / "model.pt").read_bytes() == before and (out / "checkpoint.pt").exists()
    assert main([*ARGS, "--out", str(out), "--lr", "0.01", "--overwrite"]) == 0
    assert (out / "model.pt").read_bytes() != before


def test_resume_names_the_changed_settings(tmp_path, capsys):
    out = tmp_path / "at"
    assert main([*ARGS, "--out", str(out), "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out), "--epochs", "2", "--resume", "--steps", "3", "--lr", "0.01"]) == 2
    err = _error(capsys)
    assert "lr 0.001 -> 0.01" in err and "steps 1 -> 3" in err
    assert main([*ARGS, "--out", str(out), "--epochs", "2", "--resume", "--eps", "0.2"]) == 2
    assert "eps/norm 'linf eps=0.1' -> 'linf eps=0.2'" in _error(capsys)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["trainer"] == {"steps": 1, "rel_step": None}


def test_out_that_cannot_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, message in ((tmp_path / "file", "is a file, not a directory"),
                         (tmp_path / "file" / "sub", "is a file, not a directory"),
                         ("/proc/x", "cannot be written")):
        assert main([*ARGS, "--out", str(out)]) == 2
        assert message in _error(capsys)


def test_model_card_warns_when_training_failed(tmp_path, caplog):
    out = tmp_path / "failed"
    assert main([*ARGS, "--out", str(out), "--lr", "1e-7", "--epochs", "2", "--check-size", "32"]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert any("near chance" in w for w in card["warnings"]), card["warnings"]
    assert any("did not rise" in w for w in card["warnings"]), card["warnings"]
    assert "near chance" in caplog.text


def test_outcome_warnings():
    rows = [{"val_robust": 0.0}, {"val_robust": 0.3}, {"val_robust": 0.5}]
    assert outcome_warnings(0.95, 0.5, rows, 10, adversarial=True) == []
    flat = [{"val_robust": 0.0}, {"val_robust": 0.005}]
    assert "did not rise" in outcome_warnings(0.95, 0.0, flat, 10, adversarial=True)[0]
    assert outcome_warnings(0.95, 0.0, flat, 10, adversarial=False) == []
    assert "near chance" in outcome_warnings(0.12, None, [], 10, adversarial=False)[0]


@pytest.mark.parametrize("epochs", [3, 40])
def test_learning_rate_schedule_scales_with_the_epochs(epochs):
    """The piecewise decay falls at 50% and 75% of training, however many epochs: never after a fixed epoch."""
    steps_per_epoch = 10
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = build_schedule(optimizer, "piecewise", epochs * steps_per_epoch)
    rates = []
    for _ in range(epochs * steps_per_epoch):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    total = len(rates)
    assert rates[: total // 2] == [1.0] * (total // 2)
    assert rates[total // 2] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.01)


def test_training_progress_counts_images_with_an_eta(capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal gets the bar; lines: test_progress
    data = load_dataset("mnist-sample:train", limit=64)
    fit(seeded_mlp(), TRAINERS.create("standard"), data, config=FitConfig(epochs=2, batch_size=32, check_size=0),
        progress=True)
    err = capsys.readouterr().err
    assert "/128 [" in err and "img" in err and "<" in err  # images over the whole run, with the time left
