"""Issue 15: `bastion evaluate` checks --out and --db before the work and never replaces a report unasked."""

import json
import sqlite3

import pytest

from bastion.cli import main

from .test_first_hour_errors import _fails

QUICK = ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "0.1", "--limit", "8",
         "--suite", "pgd", "--steps", "2", "--restarts", "1", "--curve-points", "0", "--no-fgsm", "--quiet"]


@pytest.fixture
def no_work(monkeypatch):
    monkeypatch.setattr("bastion.evaluate.evaluate", lambda *a, **k: pytest.fail("evaluated before the check"))


def test_db_that_is_not_sqlite_is_refused_before_the_work(tmp_path, capsys, no_work):
    (tmp_path / "notsqlite.db").write_text("hello\n" * 100)
    _fails(capsys, [*QUICK, "--out", str(tmp_path / "r"), "--db", str(tmp_path / "notsqlite.db")],
           "is not a usable bastion history")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    connection.close()
    _fails(capsys, [*QUICK, "--out", str(tmp_path / "r"), "--db", str(other)], "is not a bastion run history")


@pytest.mark.parametrize(("out", "message"), [
    ("{tmp}/file", "is a file, not a directory"),
    ("{tmp}/file/sub", "is a file, not a directory"),
    ("/proc/x", "cannot be written"),
])
def test_out_checked_before_the_work(tmp_path, capsys, no_work, out, message):
    (tmp_path / "file").write_text("x")
    _fails(capsys, [*QUICK, "--no-db", "--out", out.format(tmp=tmp_path)], message)


def test_an_earlier_report_is_kept_unless_asked(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".state.pt.k1ll3d_x.tmp").write_bytes(b"half a state, left by a SIGKILL")
    assert main([*QUICK, "--no-db", "--out", str(out)]) == 0
    report = (out / "report.json").read_bytes()
    assert {p.name for p in out.iterdir()} == {"report.json", "report.html"}
    capsys.readouterr()
    _fails(capsys, [*QUICK, "--no-db", "--out", str(out), "--eps", "0.2"], "holds the results of an earlier `bastion evaluate` run")
    assert (out / "report.json").read_bytes() == report
    _fails(capsys, [*QUICK, "--no-db", "--out", str(out), "--resume", "--overwrite"], "give one of them")
    assert main([*QUICK, "--no-db", "--out", str(out), "--eps", "0.2", "--overwrite"]) == 0
    assert json.loads((out / "report.json").read_text())["summary"]["eps"] == 0.2
