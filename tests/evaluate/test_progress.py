"""Progress without a terminal: a line per stage, and a line every interval with points done and time left."""

from __future__ import annotations

import logging

import pytest

from bastion import progress
from bastion.cli import main
from bastion.data import load_dataset
from bastion.train import TRAINERS, FitConfig, fit
from tests.train.tiny import seeded_mlp


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bastion.progress"]


def test_off_a_terminal_a_bar_writes_lines_at_the_interval_with_an_eta(monkeypatch, caplog):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setenv("BASTION_PROGRESS_SECONDS", "5")
    caplog.set_level(logging.INFO, logger="bastion.progress")
    progress.stage_started("pgd")  # a line now; the next bar line waits for the interval
    bar = progress.progress_bar(400, desc="pgd")  # stderr is captured, not a terminal: lines
    assert isinstance(bar, progress.Lines)
    clock[0] += 2
    bar.update(100)  # 2 s after the last line: nothing yet
    assert _lines(caplog) == ["stage pgd: started"]
    clock[0] += 4
    bar.update(100)  # 6 s: half done in 6 s, about 6 s left
    assert _lines(caplog)[-1] == "pgd: 200/400 pt (50%), 6 s, about 6 s left"
    clock[0] += 1
    bar.update(100)
    assert len(_lines(caplog)) == 2  # one line per interval, not per update
    monkeypatch.setenv("BASTION_PROGRESS_SECONDS", "not a number")
    assert progress.interval() == 30.0


def test_a_silent_bar_writes_nothing(monkeypatch, caplog):
    monkeypatch.setenv("BASTION_PROGRESS_SECONDS", "1e-9")
    caplog.set_level(logging.INFO, logger="bastion.progress")
    bar = progress.progress_bar(10, desc="x", enabled=False)
    bar.update(10)
    progress.stage_finished("x", progress.stage_started("x", enabled=False), enabled=False)
    assert _lines(caplog) == []


@pytest.mark.parametrize("quiet", [False, True])
def test_evaluate_writes_a_line_per_stage_unless_quiet(tmp_path, monkeypatch, caplog, quiet):
    monkeypatch.setenv("BASTION_PROGRESS_SECONDS", "1e-9")  # every update writes a line
    argv = ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "20", "--suite", "pgd",
            "--steps", "2", "--restarts", "1", "--curve-points", "0", "--out", str(tmp_path), "--no-db"]
    caplog.set_level(logging.INFO, logger="bastion.progress")
    assert main(argv + (["--quiet"] if quiet else [])) == 0
    lines = _lines(caplog)
    if quiet:
        assert lines == []
        return
    assert "stage clean: started" in lines and any(line.startswith("stage pgd: done in ") for line in lines)
    assert any(line.startswith("fgsm: ") and " pt (" in line for line in lines)  # a bar's line: points done


def test_training_writes_a_line_per_epoch_and_bar_lines(monkeypatch, caplog):
    monkeypatch.setenv("BASTION_PROGRESS_SECONDS", "1e-9")
    caplog.set_level(logging.INFO, logger="bastion.progress")
    data = load_dataset("mnist-sample:train", limit=64)
    fit(seeded_mlp(), TRAINERS.create("standard"), data, config=FitConfig(epochs=2, batch_size=32, check_size=0),
        progress=True)
    lines = _lines(caplog)
    assert [line.split(":")[0] for line in lines if line.startswith("stage epoch")] == ["stage epoch 1/2"] * 2 + [
        "stage epoch 2/2"] * 2
    assert any(line.startswith("epoch 2/2: ") and "/128 img" in line and "left" in line for line in lines)
