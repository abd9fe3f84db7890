"""Issue 15: reading the history never writes; another program's SQLite file is refused; defenses are identity."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from bastion.cli import main
from bastion.history import RunStore, from_result
from bastion.history.dashboard import _overlay_pair, render_dashboard

from .helpers import eval_report


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_history_on_another_programs_file_is_refused_untouched(tmp_path, capsys):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
        connection.execute("INSERT INTO invoices VALUES (1, 9.5)")
    connection.close()
    before = _digest(other)
    for argv in (["history", "--db", str(other)], ["dashboard", "--db", str(other), "--out", str(tmp_path / "s")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "is not a bastion run history (it holds the tables invoices)" in err and len(err.splitlines()) == 1
    with pytest.raises(Exception, match="not a bastion run history"):
        RunStore(other).record(from_result("evaluate", eval_report()))
    assert _digest(other) == before
    assert {p.name for p in tmp_path.iterdir()} == {"other.db"}  # no -wal, -shm or journal left either


def test_reading_never_writes(tmp_path, capsys):
    path = tmp_path / "h.db"
    RunStore(path).record(from_result("evaluate", eval_report(), model_name="net"))
    before = _digest(path)
    path.chmod(0o444)
    try:
        assert main(["history", "--db", str(path)]) == 0
        assert "net" in capsys.readouterr().out
    finally:
        path.chmod(0o644)
    assert _digest(path) == before


def _defended(run_id: str, defense: list[str] | None = None, ensemble: list[str] | None = None) -> dict:
    report = eval_report(run_id=run_id, model_fingerprint="m1")
    report["config"].update(defense=defense, ensemble=ensemble, ensemble_mode="logits" if ensemble else None)
    if ensemble:
        report["provenance"]["model"]["spec"] = None
    return report


def test_defenses_and_ensembles_are_part_of_the_identity(tmp_path):
    bare = from_result("evaluate", _defended("a"))
    jpeg = from_result("evaluate", _defended("b", ["jpeg:quality=75"]))
    two = from_result("evaluate", _defended("c", ["median", "bit-depth"]))
    ensemble = from_result("evaluate", _defended("d", ensemble=["zoo:mnist-cnn", "x.py:net"]))
    assert bare.model == "zoo:mnist-cnn" and bare.model_fingerprint == "m1"
    assert jpeg.model == "zoo:mnist-cnn + jpeg:quality=75"
    assert two.model == "zoo:mnist-cnn + median + bit-depth"
    assert ensemble.model == "ensemble[logits](zoo:mnist-cnn, x.py:net)"
    assert len({r.model_fingerprint for r in (bare, jpeg, two, ensemble)}) == 4
    named = from_result("evaluate", _defended("e", ["jpeg:quality=75"]), model_name="net")
    assert named.model == "net + jpeg:quality=75"
    store = RunStore(tmp_path / "h.db")
    for record in (bare, jpeg):
        store.record(record)
    look = {"kind": "evaluate", "threat": "linf eps=0.3"}
    assert store.baseline("last", model=jpeg.model, **look).run_id == "b"  # never the undefended run
    assert store.baseline("last", model=bare.model, **look).run_id == "a"


def test_dashboard_overlays_only_curves_of_one_threat_model(tmp_path, capsys):
    store = RunStore(tmp_path / "h.db")
    linf = eval_report(run_id="linf", eps=0.3, curve=[(0.0, 0.99), (0.3, 0.9)])
    l2 = eval_report(run_id="l2", norm="l2", eps=1.0, curve=[(0.0, 0.99), (1.0, 0.7), (2.0, 0.2)])
    for report in (linf, l2):
        store.record(from_result("evaluate", report))
    html = render_dashboard(store.runs())
    assert 'id="eps-overlay"' not in html and "under the same threat model" in html
    assert html.count('id="single-') == 2  # each model's own curve, not a one-point trend
    assert "Accuracy against eps (l2 eps=1)" in html and "Accuracy against eps (linf eps=0.3)" in html
    assert main(["dashboard", "--db", str(store.path), "--out", str(tmp_path / "s"), "--compare", "linf", "l2"]) == 2
    assert "only curves of the same threat model" in capsys.readouterr().err
    store.record(from_result("evaluate", eval_report(run_id="linf2", eps=0.3, curve=[(0.0, 0.98), (0.3, 0.8)])))
    store.record(from_result("evaluate", eval_report(run_id="l2b", norm="l2", eps=1.0, curve=[(0.0, 0.9)])))
    overlay = _overlay_pair(store.runs())
    assert overlay is not None and [r.run_id for r in overlay] == ["l2", "l2b"]


def test_single_train_run_charts_its_epochs():
    card = {"metrics": {"clean_accuracy": 0.9}, "hyperparameters": {"threat": "linf eps=0.3"},
            "model": {"spec": "m"}, "data": {"name": "d"},
            "history": [{"epoch": 1.0, "val_clean": 0.5, "val_robust": 0.1}, {"epoch": 2.0, "val_clean": 0.8,
                                                                                 "val_robust": 0.3}]}
    html = render_dashboard([from_result("train", card)])
    assert "Held-out accuracy during training (one run so far)" in html


def test_dashboard_out_that_is_a_file(tmp_path, capsys):
    RunStore(tmp_path / "h.db").record(from_result("evaluate", eval_report()))
    (tmp_path / "site").write_text("x")
    assert main(["dashboard", "--db", str(tmp_path / "h.db"), "--out", str(tmp_path / "site")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
