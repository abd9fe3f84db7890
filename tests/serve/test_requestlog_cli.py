"""The sampled SQLite request log, `bastion requests`, and `bastion serve`'s one-line errors."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bastion.cli import main
from bastion.serve import RequestLog, create_app, load_config
from tests.serve.conftest import guard_of, infer_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_requests_are_logged_by_hash_and_readable(make_server, eval_images, tmp_path: Path, capsys) -> None:
    db = tmp_path / "serve.db"
    server = make_server(monitor={"request_log": str(db)})
    x, _ = eval_images
    with TestClient(create_app(server)) as client:
        body = client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[:20])).json()
        client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[:1]))  # the same image again
    guard = guard_of(body)
    rows = RequestLog(db).rows(last=100)
    assert len(rows) == 21
    assert [r["input_hash"] for r in rows[:20]] == [g["input_hash"] for g in guard]
    assert rows[20]["input_hash"] == rows[0]["input_hash"]  # same input, same hash
    assert [r["outcome"] for r in rows[:20]] == [g["outcome"] for g in guard]
    assert all(r["latency_ms"] > 0 and "feature-squeezing" in r["p_values"] for r in rows)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert main(["requests", str(db), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("requests logged: ") and len(out.strip().splitlines()) == 6
    assert rows[-1]["input_hash"] in out


def test_the_log_samples_at_the_configured_rate(make_server, eval_images, tmp_path: Path) -> None:
    db = tmp_path / "sampled.db"
    server = make_server(monitor={"request_log": str(db), "log_sample": 0.25})
    x, _ = eval_images
    with TestClient(create_app(server)) as client:
        for chunk in x[:400].split(64):
            client.post(f"/v2/models/{server.name}/infer", json=infer_body(chunk))
    n = len(RequestLog(db).rows(last=1000))
    assert 60 <= n <= 140  # Binomial(400, 0.25): mean 100, sd 8.7


def test_serve_without_the_extra_says_how_to_install(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'bastion[serve]'" in err and len(err.strip().splitlines()) == 1


def test_bad_settings_are_one_line_errors(tmp_path: Path, capsys) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[guard]\nfpr = 2.0\n')
    assert main(["serve", "--config", str(config)]) == 2
    assert "guard.fpr" in capsys.readouterr().err
    config.write_text('[guard\n')
    assert main(["serve", "--config", str(config)]) == 2
    assert "cannot parse" in capsys.readouterr().err
    assert main(["serve", "--fallback", "maybe"]) == 2
    assert "abstain, smooth or label:K" in capsys.readouterr().err
    assert main(["serve", "--fpr", "0.01", "--reject-fpr", "0.05"]) == 2
    assert "must be smaller than fpr" in capsys.readouterr().err
    assert main(["requests", str(tmp_path / "none.db")]) == 2
    assert load_config(None, {"guard": {"fpr": 0.1}}).guard.fpr == 0.1
