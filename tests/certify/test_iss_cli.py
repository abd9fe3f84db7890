"""`bastion certify --sequential` without --radii: the global plan by default, the same after --resume and torchrun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.certify.partial import PartialRows
from bastion.cli import main
from tests.certify.test_cli import NETS
from tests.torchrun import torchrun

ARGS = ["--data", "mnist-sample", "--sigma", "0.25", "--sequential", "--n0", "10", "--samples", "3000",
        "--batch-size", "30", "--limit", "10", "--subset-seed", "4", "--seed", "2", "--no-db", "--quiet"]


def _report(out: Path) -> dict:
    return json.loads((out / "certify.json").read_text())


def _rows(out: Path) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in _report(out)["rows"]]


@pytest.fixture
def argv(tmp_path):
    nets = tmp_path / "nets.py"
    nets.write_text(NETS)
    return ["certify", "--model", f"{nets}:build", *ARGS]


def test_radius_mode_plans_globally_by_default_and_per_point_on_request(tmp_path, argv, capsys):
    assert main([*argv, "--out", str(tmp_path / "global")]) == 0
    assert "mean radius decline <= 0.05" in capsys.readouterr().out
    assert main([*argv, "--allocation", "point", "--out", str(tmp_path / "point")]) == 0
    assert "per-point radius decline <= 0.05" in capsys.readouterr().out
    both = {name: _report(tmp_path / name) for name in ("global", "point")}
    assert both["global"]["settings"]["allocation"] == "global" and both["point"]["settings"]["allocation"] == "point"
    for report in both.values():
        assert all(r["samples"] - r["n"] in (10, 2010) and 100 <= r["n"] <= 3000 for r in report["rows"])
        assert report["summary"]["samples"] == sum(r["samples"] for r in report["rows"])
    assert len({r["n"] for r in both["global"]["rows"]}) > 1  # input-specific sizes


@pytest.mark.parametrize("extra", [["--radii", "0.5"], []])
def test_the_allocation_outside_radius_mode_is_one_line(argv, capsys, extra):
    plain = [a for a in argv if a != "--sequential"] if not extra else argv
    code = main([*plain, *extra, "--allocation", "point", "--out", "unused"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--allocation sets the sample allocation of --sequential" in lines[0]


def test_a_resumed_run_plans_the_same_sizes(tmp_path, argv, monkeypatch):
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    append = PartialRows.append
    calls = []

    def interrupted(self, rows):  # the first group is saved, then the process dies
        append(self, rows)
        calls.append(len(rows))
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(PartialRows, "append", interrupted)
    out = tmp_path / "resumed"
    assert main([*argv, "--out", str(out)]) != 0
    monkeypatch.setattr(PartialRows, "append", append)
    assert not (out / "certify.json").exists() and calls == [3]
    assert main([*argv, "--resume", "--out", str(out)]) == 0
    assert _rows(out) == _rows(tmp_path / "whole")


def test_two_processes_plan_and_certify_as_one(tmp_path, argv):
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    done = torchrun(2, [*argv, "--out", str(tmp_path / "two")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _rows(tmp_path / "two") == _rows(tmp_path / "one")
