"""Replay the first-user trial of issue 26 with the real command line, and fail on any case that regressed.

Each case runs `python -m bastion ...` in a subprocess, as a user would, and checks what the user
sees: the exit code, the one-line error (no traceback), the warning, the files left behind. The
cases are the trial's:

- untrained: a factory without --weights is evaluated; it must be warned about (terminal and
  report.json) and its verdict must not be "reliable".
- truncated-npz: a cut .npz file as --data: exit 2, one line.
- train-labels: `bastion train` on labels the model cannot output: exit 2, one line.
- eps-0, eps-8: --eps 0, and --eps 8 on [0, 1] images: exit 2, one line, with a hint ("8/255").
- eps-max: `bastion attack fgsm --eps max`: exit 2 (max is for minimal-norm attacks).
- transfer: `bastion attack transfer` without --surrogate: exit 2.
- resume-changed: an interrupted run resumed with another eps: exit 2, one line naming
  "eps 0.3 -> 0.25", the saved state unchanged.
- resume-finished: a finished run resumed: exit 0, report.json unchanged, no second history run.
- progress: a 400-point evaluation with stderr a pipe (not a terminal) prints a progress line more
  than 5 s before it ends.
- attack-seconds: no attack row of that evaluation's report.json spent passes in 0 seconds.

Usage: python benchmarks/trial.py [--only CASE ...] [--keep DIR]
Exit status: 0 when every case passes; 1 with the failing cases listed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

BASTION = [sys.executable, "-m", "bastion"]
QUICK = ["--data", "mnist-sample", "--limit", "20"]


def bastion(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The real command line, stdout and stderr captured (so stderr is not a terminal)."""
    return subprocess.run([*BASTION, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _error_lines(stderr: str) -> list[str]:
    """What stderr says besides progress lines (INFO): an error must be exactly one line of it."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("bastion: INFO:")]


def refused(done: subprocess.CompletedProcess[str], *must_say: str) -> list[str]:
    """Problems with a refusal: exit 2, one line, no traceback, the words it must say."""
    problems = []
    lines = _error_lines(done.stderr)
    if done.returncode != 2:
        problems.append(f"exit {done.returncode}, not 2")
    if "Traceback" in done.stderr:
        problems.append("a traceback")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, not one: {' | '.join(lines)[:300]}")
    text = " ".join(lines)
    problems += [f"the message does not say {word!r}: {text[:200]}" for word in must_say if word not in text]
    return problems


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def case_untrained(work: Path) -> list[str]:
    done = bastion(["evaluate", "--model", "bastion.models.nets:MnistCNN", *QUICK, "--suite", "pgd",
                    "--out", str(work / "untrained"), "--no-db"], work)
    if done.returncode != 0:
        return [f"exit {done.returncode}: {done.stderr[-300:]}"]
    report = json.loads((work / "untrained" / "report.json").read_text())
    problems = []
    if report["verdict"]["verdict"] == "reliable":
        problems.append("the verdict calls the evaluation of an untrained model reliable")
    if not any("weights" in w or "chance" in w for w in report["warnings"]):
        problems.append("report.json has no warning about the untrained model")
    terminal = done.stdout + done.stderr
    if "without --weights" not in terminal and "chance" not in terminal:
        problems.append("the terminal shows no warning about the untrained model")
    return problems


def case_truncated_npz(work: Path) -> list[str]:
    path = work / "truncated.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((64, 1, 28, 28), dtype=np.float32), y=rng.integers(0, 10, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return refused(bastion(["evaluate", "--model", "zoo:mnist-cnn", "--data", f"npz:{path}",
                            "--out", str(work / "npz"), "--no-db"], work))


def case_train_labels(work: Path) -> list[str]:
    path = work / "labels.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((32, 1, 28, 28), dtype=np.float32), y=np.arange(32) % 12)  # labels 10, 11
    return refused(bastion(["train", "--model", "bastion.models.nets:MnistCNN", "--data", f"npz:{path}",
                            "--method", "standard", "--epochs", "1", "--out", str(work / "labels"), "--no-db"], work))


def case_eps_0(work: Path) -> list[str]:
    return refused(bastion(["evaluate", "--model", "zoo:mnist-cnn", *QUICK, "--eps", "0",
                            "--out", str(work / "eps0"), "--no-db"], work))


def case_eps_8(work: Path) -> list[str]:
    return refused(bastion(["evaluate", "--model", "zoo:mnist-cnn", *QUICK, "--eps", "8",
                            "--out", str(work / "eps8"), "--no-db"], work), "8/255")


def case_eps_max(work: Path) -> list[str]:
    return refused(bastion(["attack", "fgsm", "--model", "zoo:mnist-cnn", *QUICK, "--eps", "max"], work))


def case_transfer(work: Path) -> list[str]:
    return refused(bastion(["attack", "transfer", "--model", "zoo:mnist-cnn", *QUICK, "--eps", "0.3"], work))


def _interrupted_run(work: Path, args: list[str], out: Path) -> Path | None:
    """Start an evaluation, interrupt it (SIGINT) once a stage is saved; the state it left, or None."""
    state = out / "state.pt"
    process = subprocess.Popen([*BASTION, *args], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not state.exists():
            time.sleep(0.02)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return state if state.exists() and not (out / "report.json").exists() else None


def case_resume_changed(work: Path) -> list[str]:
    out = work / "resume-changed"
    run = ["evaluate", "--model", "zoo:mnist-cnn-at", "--data", "mnist-sample", "--limit", "300", "--out", str(out),
           "--no-db", "--eps", "0.3"]
    state = _interrupted_run(work, run, out)
    if state is None:
        return ["could not interrupt an evaluation after its first stage (it ended first); nothing to resume"]
    before = _digest(state)
    done = bastion([*run[:-1], "0.25", "--resume"], work)
    problems = refused(done, "eps 0.3 -> 0.25", "--overwrite")
    if _digest(state) != before:
        problems.append("the saved state changed (or was removed)")
    return problems


def _history_runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def case_resume_finished(work: Path) -> list[str]:
    out, db = work / "resume-finished", work / "history.db"
    run = ["evaluate", "--model", "zoo:mnist-cnn", *QUICK, "--suite", "pgd", "--out", str(out), "--db", str(db)]
    first = bastion(run, work)
    if first.returncode != 0:
        return [f"the first run failed: exit {first.returncode}: {first.stderr[-300:]}"]
    report, runs = _digest(out / "report.json"), _history_runs(db)
    again = bastion([*run, "--resume"], work)  # the README's own resume line, on a finished run
    problems = []
    if again.returncode != 0:
        problems.append(f"exit {again.returncode}: {again.stderr[-300:]}")
    if _digest(out / "report.json") != report:
        problems.append("report.json was replaced")
    if _history_runs(db) != runs:
        problems.append(f"the history holds {_history_runs(db)} runs, not {runs}: a second run was recorded")
    if "finished" not in again.stdout + again.stderr:
        problems.append("it does not say that the run is finished")
    return problems


def case_progress_and_seconds(work: Path) -> dict[str, list[str]]:
    """One 400-point evaluation, stderr a pipe: its progress lines' times, then its report's attack rows."""
    out = work / "progress"
    process = subprocess.Popen([*BASTION, "evaluate", "--model", "zoo:mnist-cnn-at", "--data", "mnist-sample",
                                "--limit", "400", "--out", str(out), "--no-db"], cwd=work,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    stamped: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: stamped.extend((time.monotonic(), line) for line in process.stderr))
    reader.start()
    code = process.wait(timeout=1800)
    end = time.monotonic()
    reader.join()
    if code != 0:
        message = f"the evaluation failed: exit {code}: {''.join(line for _, line in stamped)[-300:]}"
        return {"progress": [message], "attack-seconds": [message]}
    early = [line for at, line in stamped if at < end - 5 and line.startswith("bastion: INFO:")]
    progress = [] if early else [f"no progress line more than 5 s before the end ({len(stamped)} lines on stderr)"]
    from bastion.evaluate.report_schema import attack_rows  # report.json of any schema version

    report = json.loads((out / "report.json").read_text())
    seconds = [f"attack row {a['name']} ({a.get('stage', '?')}) spent {a['passes']} passes in {a['seconds']} s"
               for a in attack_rows(report)
               if sum(v for k, v in a["passes"].items() if k.endswith("samples")) > 0 and not a["seconds"] > 0]
    return {"progress": progress, "attack-seconds": seconds}


CASES: dict[str, Callable[[Path], list[str]]] = {
    "untrained": case_untrained,
    "truncated-npz": case_truncated_npz,
    "train-labels": case_train_labels,
    "eps-0": case_eps_0,
    "eps-8": case_eps_8,
    "eps-max": case_eps_max,
    "transfer": case_transfer,
    "resume-changed": case_resume_changed,
    "resume-finished": case_resume_finished,
}
JOINT = ("progress", "attack-seconds")  # one evaluation answers both


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[*CASES, *JOINT], help="run these cases only")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    chosen = args.only or [*CASES, *JOINT]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bastion-trial-"))
    work.mkdir(parents=True, exist_ok=True)
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    print(f"replaying the trial in {work} ({env_note})", flush=True)
    results: dict[str, list[str]] = {}
    for name in chosen:
        if name in CASES:
            started = time.monotonic()
            (work / name).mkdir(exist_ok=True)
            results[name] = CASES[name](work / name)
            print(f"{'PASS' if not results[name] else 'FAIL'}  {name}  ({time.monotonic() - started:.0f} s)",
                  flush=True)
    if any(name in JOINT for name in chosen):
        started = time.monotonic()
        (work / "joint").mkdir(exist_ok=True)
        joint = case_progress_and_seconds(work / "joint")
        for name in JOINT:
            if name in chosen:
                results[name] = joint[name]
                print(f"{'PASS' if not joint[name] else 'FAIL'}  {name}  ({time.monotonic() - started:.0f} s)",
                      flush=True)
    failed = {name: problems for name, problems in results.items() if problems}
    for name, problems in failed.items():
        for problem in problems:
            print(f"  {name}: {problem}")
    print(f"{len(results) - len(failed)} of {len(results)} cases pass" + (f"; failing: {', '.join(failed)}"
                                                                           if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
