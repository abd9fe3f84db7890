"""`torchrun -m bastion evaluate` on 2 and 3 gloo processes reports what one process reports, resumed or not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from bastion.cli import main
from bastion.evaluate.report_schema import class_rows, curve_rows
from bastion.evaluate.runner import STATE_NAME
from tests.evaluate.comparable import without_clocks
from tests.torchrun import free_port, torchrun

#: The AutoAttack suite with small budgets, 48 points in chunks of 8: every stage kind of the default run.
ARGS = ["evaluate", "--model", "zoo:mnist-cnn-at", "--data", "mnist-sample", "--eps", "0.3", "--limit", "48",
        "--subset-seed", "5", "--batch-size", "8", "--steps", "5", "--restarts", "2", "--aa-steps", "8",
        "--aa-queries", "300", "--curve-points", "4", "--no-db", "--quiet"]


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what legitimately differs between runs: clocks, ids, provenance, --out and --resume."""
    kept = {k: v for k, v in report.items() if k not in ("run_id", "created_at", "provenance", "config")}
    return dict(without_clocks(kept))


def broken_points(report: dict[str, Any]) -> dict[str, list[int]]:
    """The points each attack stage broke, by stage: the per-point robust flags, stage by stage."""
    return {s["name"]: s["result"]["broken"] for s in report["stages"] if s["kind"] == "attack"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("one") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def test_two_and_three_processes_report_what_one_process_reports(one_process, tmp_path):
    assert sum(len(b) for b in broken_points(one_process).values()) > 0  # the attacks break points: flags to compare
    for processes in (2, 3):
        out = tmp_path / f"p{processes}"
        done = torchrun(processes, [*ARGS, "--out", str(out)], cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads((out / "report.json").read_text())
        assert broken_points(report) == broken_points(one_process)
        assert report["summary"] == one_process["summary"]
        assert curve_rows(report) == curve_rows(one_process) and class_rows(report) == class_rows(one_process)
        assert comparable(report) == comparable(one_process)  # stage results, passes, gallery, verdict, warnings
        assert report["provenance"]["processes"] == processes
        assert done.stdout.count("report: ") == 1  # rank 0 alone prints and writes
        assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json"]


def _saved_stages(state: Path) -> int:
    try:
        return len(torch.load(state, map_location="cpu", weights_only=True)["stages"])
    except Exception:  # noqa: BLE001 - not written yet, or being replaced: look again
        return 0


def _killed_after_stage_four(tmp_path: Path, attempts: int = 3) -> Path:
    """The --out of a 2-process run SIGKILLed once it saved 4 stages, in the middle of a later one.

    A run that ends by itself before the kill lands (the last stages take a second) must have
    ended cleanly; then another run is started, so that the race of the kill cannot fail the test.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("WORLD_SIZE", None)
    for attempt in range(attempts):
        out, log = tmp_path / f"killed-{attempt}", tmp_path / f"killed-{attempt}.log"
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                   "127.0.0.1", "--master-port", str(free_port()), "-m", "bastion", *ARGS, "--out", str(out)]
        with log.open("w") as stderr:
            run = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True,  # noqa: S603 - our CLI
                                   stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.monotonic() + 300
            while _saved_stages(out / STATE_NAME) < 4 and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                os.killpg(run.pid, signal.SIGKILL)  # in the middle of a stage after pgd: no clean shutdown
            except ProcessLookupError:
                pass  # every process of the run had ended
            code = run.wait()
        if not (out / "report.json").exists():
            if _saved_stages(out / STATE_NAME) >= 4:
                return out
            continue  # killed between removing the state and writing the report: nothing left to resume
        assert code == 0, log.read_text()[-3000:]  # it finished before the kill: cleanly, or it is a failure
    pytest.fail(f"the run finished {attempts} times before it could be killed")


def test_a_run_killed_mid_stage_resumes_with_another_number_of_processes(one_process, tmp_path):
    out = _killed_after_stage_four(tmp_path)
    saved = _saved_stages(out / STATE_NAME)
    assert 4 <= saved < len(one_process["stages"])

    done = torchrun(3, [*ARGS, "--out", str(out), "--resume"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert comparable(report) == comparable(one_process)
    assert not (out / STATE_NAME).exists()  # the state goes once the report is written


def test_a_random_defense_escalated_with_eot_gives_the_same_report_on_two_processes(tmp_path):
    """Random draws of the model itself (a defense's own generator) are the chunk's, not the process's."""
    argv = ["evaluate", "--model", "zoo:mnist-cnn-at", "--data", "mnist-sample", "--eps", "0.3", "--limit", "32",
            "--batch-size", "8", "--suite", "pgd", "--steps", "5", "--restarts", "1", "--defense", "resize-pad",
            "--eot-samples", "2", "--curve-points", "3", "--no-db", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    assert any(s["name"] == "escalation" and s["result"]["ran"] for s in one["stages"])  # EOT ran
    done = torchrun(2, [*argv, "--out", str(tmp_path / "two")], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert comparable(json.loads((tmp_path / "two" / "report.json").read_text())) == comparable(one)
