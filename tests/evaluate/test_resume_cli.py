"""`bastion evaluate --resume`: a changed setting is refused and the state kept; a finished run is left alone."""

from __future__ import annotations

import json
import logging

import pytest

from bastion.cli import main
from bastion.evaluate.stages import PerClassStage
from bastion.history.store import RunStore

ARGS = ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "12", "--suite", "pgd",
        "--steps", "2", "--restarts", "1", "--curve-points", "0", "--quiet"]


def test_resume_refuses_a_changed_setting_and_leaves_a_finished_run_alone(tmp_path, monkeypatch, capsys, caplog):
    out, db = tmp_path / "run", tmp_path / "runs.db"
    run = [*ARGS, "--eps", "0.3", "--out", str(out), "--db", str(db)]
    monkeypatch.setattr(PerClassStage, "run", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(run) == 130  # interrupted in its last stage: the stages before it are saved
    monkeypatch.undo()
    saved = (out / "state.pt").read_bytes()
    capsys.readouterr()

    changed = [*ARGS, "--eps", "0.25", "--out", str(out), "--db", str(db), "--resume"]
    assert main(changed) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eps 0.3 -> 0.25" in err and "--overwrite" in err
    assert (out / "state.pt").read_bytes() == saved and not (out / "report.json").exists()

    caplog.set_level(logging.INFO, logger="bastion.progress")
    assert main([r for r in run if r != "--quiet"] + ["--resume"]) == 0  # the same settings continue the run
    assert "stage clean: restored from the saved run" in caplog.text and "stage per-class: done in" in caplog.text
    report = (out / "report.json").read_bytes()
    assert not (out / "state.pt").exists() and len(RunStore(db).runs()) == 1
    capsys.readouterr()

    (out / "report.html").unlink()  # as if killed between the two files
    assert main([*run, "--resume"]) == 0  # the README's resume line on a finished run
    said = capsys.readouterr().out
    assert "is finished" in said and str(out / "report.json") in said
    assert (out / "report.json").read_bytes() == report and len(RunStore(db).runs()) == 1
    assert json.loads(report)["summary"]["eps"] == pytest.approx(0.3) and (out / "report.html").exists()

    assert main([*changed[:-1], "--overwrite"]) == 0  # --overwrite starts over, with the new eps
    assert json.loads((out / "report.json").read_text())["summary"]["eps"] == pytest.approx(0.25)
    assert len(RunStore(db).runs()) == 2
