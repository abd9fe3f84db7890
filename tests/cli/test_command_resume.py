"""detect, patch, universal, spatial and corruptions run as suites of stages: --resume and --overwrite as evaluate's.

For each command: a run interrupted after its first stage and resumed writes the same result as an
uninterrupted run, without running the finished stage again; a second run into the same --out
without --resume or --overwrite is refused in one line (exit 2); --resume on a finished run leaves
it alone; --overwrite runs it again.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bastion.cli import main
from bastion.evaluate.stage import Stage
from bastion.evaluate.stages import (
    CleanStage,
    CorruptionStage,
    DetectorAdaptiveStage,
    DetectorRatesStage,
    PatchFitStage,
    PatchMeasureStage,
    SpatialStage,
    UniversalFitStage,
    UniversalScoreStage,
)

MODEL = ["--model", "zoo:mnist-cnn"]

#: command -> (arguments, result file, stage class interrupted and the name of its stage, every stage class)
COMMANDS: dict[str, tuple[list[str], str, tuple[type[Stage], str], list[type[Stage]]]] = {
    "detect": (["--data", "mnist-sample:eval", "--limit", "40", "--calibration", "mnist-sample:train",
                "--calibration-limit", "30", "--steps", "2", "--adaptive-steps", "2", "--adaptive-limit", "4",
                "--detectors", "confidence,margin", "--fpr", "0.1", "--quiet"],
               "detection.json", (DetectorAdaptiveStage, "adaptive-margin"),
               [DetectorRatesStage, DetectorAdaptiveStage]),
    "patch": (["--data", "mnist-sample", "--limit", "16", "--steps", "3", "--train-batch", "4", "--placements", "2"],
              "patch.json", (PatchMeasureStage, "patch-measure"), [PatchFitStage, PatchMeasureStage]),
    "universal": (["--data", "mnist-sample:train", "--limit", "16", "--eval-limit", "16", "--method", "sgd",
                   "--epochs", "1"],
                  "universal.json", (UniversalScoreStage, "universal-score"), [UniversalFitStage, UniversalScoreStage]),
    "spatial": (["--data", "mnist-sample", "--limit", "8", "--angles", "3", "--translations", "3", "--steps", "2"],
                "spatial.json", (SpatialStage, "first-order"), [CleanStage, SpatialStage]),
    "corruptions": (["--data", "mnist-sample", "--limit", "8", "--corruptions", "contrast,gaussian-noise",
                     "--severities", "1,4", "--baseline-model", "zoo:mnist-cnn"],
                    "corruptions.json", (CorruptionStage, "baseline"), [CorruptionStage]),
}

#: Wall-clock times and the date, which differ between two runs of the same work.
CLOCKS = {"seconds", "train_seconds", "created_at"}


def _without_clocks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_clocks(v) for k, v in value.items() if k not in CLOCKS}
    if isinstance(value, list):
        return [_without_clocks(v) for v in value]
    return value


def _spy(monkeypatch: pytest.MonkeyPatch, classes: list[type[Stage]], ran: list[str]) -> None:
    """Record the name of every stage of `classes` that runs."""
    for cls in classes:
        real = cls.run

        def run(self: Stage, ctx: Any, real: Any = real) -> Any:
            ran.append(self.name)
            return real(self, ctx)

        monkeypatch.setattr(cls, "run", run)


def _interrupt(monkeypatch: pytest.MonkeyPatch, cls: type[Stage], name: str) -> None:
    """Stop the run (as Ctrl-C does) when the stage `name` of `cls` starts."""
    real = cls.run

    def run(self: Stage, ctx: Any) -> Any:
        if self.name == name:
            raise KeyboardInterrupt
        return real(self, ctx)

    monkeypatch.setattr(cls, "run", run)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_resumed_run_writes_what_an_uninterrupted_run_writes(command, tmp_path, monkeypatch, capsys):
    args, result, (cls, name), classes = COMMANDS[command]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main([command, *MODEL, *args, "--out", str(whole)]) == 0
    expected = json.loads((whole / result).read_text())
    assert not (whole / "state.pt").exists()  # a finished run keeps no saved stages

    with monkeypatch.context() as patched:
        _interrupt(patched, cls, name)
        assert main([command, *MODEL, *args, "--out", str(parts)]) == 130
    assert (parts / "state.pt").is_file() and not (parts / result).exists()

    ran: list[str] = []
    with monkeypatch.context() as patched:
        _spy(patched, classes, ran)
        assert main([command, *MODEL, *args, "--out", str(parts), "--resume"]) == 0
    assert ran and ran[0] == name  # the stages finished before the interruption were restored, not run again
    resumed = json.loads((parts / result).read_text())
    assert _without_clocks(resumed) == _without_clocks(expected)
    assert not (parts / "state.pt").exists()
    capsys.readouterr()

    assert main([command, *MODEL, *args, "--out", str(parts)]) == 2  # never replaced unasked
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "--overwrite" in err and result in err

    finished = (parts / result).read_bytes()
    assert main([command, *MODEL, *args, "--out", str(parts), "--resume"]) == 0  # a finished run is left alone
    assert "is finished" in capsys.readouterr().out and (parts / result).read_bytes() == finished


def test_resume_refuses_changed_settings_and_overwrite_starts_over(tmp_path, monkeypatch, capsys):
    args, result, (cls, name), _ = COMMANDS["spatial"]
    out = tmp_path / "run"
    with monkeypatch.context() as patched:
        _interrupt(patched, cls, name)
        assert main(["spatial", *MODEL, *args, "--out", str(out)]) == 130
    saved = (out / "state.pt").read_bytes()
    capsys.readouterr()
    changed = [*args, "--angles", "5"]  # the grid stage, finished and saved, would change
    assert main(["spatial", *MODEL, *changed, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "angles 3 -> 5" in err and (out / "state.pt").read_bytes() == saved
    assert main(["spatial", *MODEL, *changed, "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["spatial", *MODEL, *changed, "--out", str(out), "--overwrite"]) == 0
    report = json.loads((out / result).read_text())
    assert report["settings"]["grid"]["angles"] == 5 and not (out / "state.pt").exists()


def test_spatial_on_two_processes_writes_what_one_process_writes(tmp_path):
    """Under torchrun each process attacks its share of the chunks; rank 0 alone writes spatial.json."""
    from tests.torchrun import torchrun

    args = ["spatial", *MODEL, "--data", "mnist-sample", "--limit", "12", "--angles", "3", "--translations", "3",
            "--steps", "2", "--batch-size", "4"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    done = torchrun(2, [*args, "--out", str(tmp_path / "two")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = (json.loads((tmp_path / d / "spatial.json").read_text()) for d in ("one", "two"))
    assert _without_clocks(one) == _without_clocks(two) and not (tmp_path / "two" / "state.pt").exists()
