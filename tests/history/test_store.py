"""The SQLite history: records, look-ups, baselines, migrations, and writers that race."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import InputError
from bastion.history import SCHEMA_VERSION, RunStore, from_result
from bastion.history.store import MIGRATIONS
from tests.history.helpers import eval_report


def _record(store: RunStore, run_id: str, robust: float, **kwargs: object) -> str:
    record = from_result("evaluate", eval_report(run_id=run_id, robust=robust), model_name="net")
    return store.record(record.with_(**kwargs))


def test_record_and_read_back(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "sub" / "bastion.db")
    record = from_result("evaluate", eval_report(), git_commit="abc1234", report_path="/x/report.html")
    assert store.record(record) == record.run_id
    assert store.record(record) == f"{record.run_id}-2"  # same id again: suffixed, never lost or overwritten
    back = store.get(record.run_id)
    assert back.result == record.result and back.metrics == record.metrics
    assert (back.git_commit, back.report_path, back.threat) == ("abc1234", "/x/report.html", "linf eps=0.3")
    assert [r.run_id for r in store.runs()] == [record.run_id, f"{record.run_id}-2"]
    assert store.get(f"{record.run_id}-2").run_id.endswith("-2")
    with pytest.raises(InputError, match="ambiguous"):
        store.get("20261122")
    with pytest.raises(InputError, match="no run"):
        store.get("nope")
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_baselines(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "h.db")
    _record(store, "r1", 0.6)
    _record(store, "r2", 0.9, gate="pass")
    _record(store, "r3", 0.7)
    _record(store, "r4", 0.1, gate="fail")
    store.record(from_result("evaluate", eval_report(run_id="other", robust=0.99, eps=0.1), model_name="net"))
    look = {"model": "net", "kind": "evaluate", "threat": "linf eps=0.3"}
    assert store.baseline("last", **look).run_id == "r3"  # r4 failed its gate: never a baseline
    assert store.baseline("best", **look).run_id == "r2"  # "other" is at another eps
    assert store.baseline("last", **look, exclude="r3").run_id == "r2"
    assert store.baseline("r1", **look).run_id == "r1"
    assert store.baseline("last", model="unknown", kind="evaluate", threat="linf eps=0.3") is None
    with pytest.raises(InputError, match="cannot be compared"):
        store.baseline("other", **look)
    assert [r.run_id for r in store.runs(model="net", limit=2)] == ["r4", "other"]


def test_migrates_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:  # a database as schema version 1 wrote it
        for statement in MIGRATIONS[0]:
            connection.execute(statement)
        connection.execute("INSERT INTO runs (run_id, created_at, kind, model, threat, metrics, result) VALUES "
                           "('v1run', '2026-01-01T00:00:00+00:00', 'evaluate', 'net', 'linf eps=0.3', "
                           "'{\"robust_accuracy\": 0.5}', '{}')")
        connection.execute("PRAGMA user_version = 1")
    connection.close()
    store = RunStore(path)
    old = store.get("v1run")  # read as it is: reading never writes, so never migrates
    assert old.gate is None and old.metrics == {"robust_accuracy": 0.5}
    assert store.schema_version() == 1
    _record(store, "new", 0.4, gate="fail")
    assert store.schema_version() == SCHEMA_VERSION == 2
    assert store.baseline("last", model="net", kind="evaluate", threat="linf eps=0.3").run_id == "v1run"


def test_refuses_newer_or_foreign_files(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(InputError, match="newer than this bastion"):
        RunStore(newer).runs()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="not a usable bastion history"):
        RunStore(junk).runs()
    with pytest.raises(InputError, match="no run history"):
        RunStore(tmp_path / "missing.db").runs()


def _writer(path: str, worker: int, count: int, start: Any) -> None:
    store = RunStore(path)
    start.wait()
    for i in range(count):
        store.record(from_result("evaluate", eval_report(run_id="same-id", robust=i / count), model_name=f"w{worker}"))


def test_eight_processes_record_at_once(tmp_path: Path) -> None:
    path, workers, count = str(tmp_path / "race.db"), 8, 25
    context = fork_context()
    start = context.Barrier(workers)
    processes = [context.Process(target=_writer, args=(path, w, count, start)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    runs = RunStore(path).runs()
    assert len(runs) == workers * count  # every run kept, every id unique despite the shared report id
    assert len({r.run_id for r in runs}) == workers * count
    for w in range(workers):
        assert [r.metrics["robust_accuracy"] for r in runs if r.model == f"w{w}"] == [i / count for i in range(count)]


def fork_context() -> Any:
    """Forked workers start in milliseconds (spawned ones would import torch again, seconds each)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    return multiprocessing.get_context("fork")


def test_git_commit_of_the_working_directory(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from bastion.history import git_commit

    assert git_commit(tmp_path) is None  # not a repository: quietly None
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert git_commit(repo) is None  # no commit yet
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    assert git_commit(repo) == head.stdout.strip()
