"""`bastion serve --check`'s report: clean, benign-shift and attack rows measured through the HTTP API."""

from __future__ import annotations

import json
import math

import pytest
from starlette.testclient import TestClient

from bastion.corruptions import CORRUPTIONS
from bastion.serve import create_app
from bastion.serve.check import format_check, run_check
from bastion.serve.status import render_status_page

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_check_reports_every_row_and_attacks_move_the_rates(make_server) -> None:
    # The check bypasses the rate limit; no batching wait, as it sends one upload at a time.
    server = make_server(security={"rate_per_second": 1.0, "burst": 1}, batching={"max_wait_ms": 0})
    report = run_check(server, create_app, data="mnist-sample:eval", limit=40, attack_steps=10, adaptive_steps=10)
    rows = {r["name"]: r for r in report["rows"]}
    assert len(rows) == 5 + 2 * len(CORRUPTIONS) + 2
    assert all(r["n"] == 40 and 0 <= r["flag_rate"] <= 1 for r in rows.values())
    clean, pgd, adaptive = rows["clean"], rows["pgd linf 0.3"], rows["detector-aware pgd linf 0.3"]
    # Each row starts with a fresh guarantee monitor: low contrast (which the 1-bit squeezer binarizes) breaks
    # it, clean traffic does not, and the row after a broken one is not flagged for it.
    assert clean["guarantee_holds"] is True and rows["contrast s3"]["guarantee_holds"] is False
    assert rows["pixelate s1"]["flag_rate"] < 0.2 and server.guarantee.state().holds
    assert clean["accuracy"] >= 0.95 and pgd["accuracy"] < clean["accuracy"]
    assert clean["flag_rate"] <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 40)
    assert pgd["n_success"] > 0 and pgd["detection_rate"] is not None and pgd["flag_rate"] > clean["flag_rate"]
    assert "evasion_rate" in adaptive and 0 <= adaptive["evasion_rate"] <= 1
    # The JPEG rows went through /predict as real files: the server counted those requests.
    assert server.metrics.duration.labels(route="predict")._sum.get() > 0
    table = format_check(report)
    assert "jpeg upload q75" in table and "detector-aware" in table
    json.dumps(report, allow_nan=False)
    server.check_report = report
    page = render_status_page(server.status())
    assert 'id="check"' in page and "pgd linf 0.3" in page and "attacks detected" in page
    assert f"{pgd['detection_rate']:.1%} of {pgd['n_success']}" in page
    with TestClient(create_app(server)) as client:
        assert client.get("/status.json").json()["check"]["rows"][0]["name"] == "clean"
