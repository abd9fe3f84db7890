"""The dashboard: a self-contained page with the trend charts and links to every run's report, drawn by Chromium."""

from __future__ import annotations

import re
import struct
import threading
import urllib.request
from pathlib import Path

import pytest

from bastion.cli import main
from bastion.history import RunStore, from_result
from bastion.history.dashboard import build_site, make_server
from tests.history.helpers import certify_report, eval_report
from tests.report.test_html_browser import find_chromium, run_chromium

ROBUST = [0.80, 0.82, 0.40, 0.85]


def history(tmp_path: Path) -> RunStore:
    """Four checkpoints of one model (the third regressed), each with a report.html, and a certify run."""
    store = RunStore(tmp_path / "bastion.db")
    for i, robust in enumerate(ROBUST):
        report = tmp_path / "runs" / f"ckpt{i}" / "report.html"
        report.parent.mkdir(parents=True)
        report.write_text(f"<!DOCTYPE html><title>report of checkpoint {i}</title>")
        curve = [(0.0, 0.99), (0.15, 0.5 * (1 + robust)), (0.3, robust), (0.6, robust / 4)][: 3 + i % 2]
        record = from_result("evaluate", eval_report(run_id=f"run-{i}", robust=robust, curve=curve,
                                                     per_class=[robust - 0.1 * (k % 3) for k in range(10)]),
                             model_name="mnist <cnn>", report_path=str(report), git_commit=f"{i:07x}abcdef")
        store.record(record.with_(gate="fail" if robust < 0.5 else "pass"))
    store.record(from_result("evaluate", eval_report(run_id="gone", robust=0.3), report_path="/nonexistent/r.html"))
    store.record(from_result("certify", certify_report()))
    return store


def test_site_is_self_contained(tmp_path: Path) -> None:
    page = build_site(history(tmp_path), tmp_path / "site")
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html and "default-src 'none'" in html
    assert "mnist &lt;cnn&gt;" in html and "mnist <cnn>" not in html  # names are escaped
    links = re.findall(r'<a class="run-link" href="([^"]+)"', html)
    assert len(links) == len(ROBUST)  # the run whose report is gone has no link
    for i, link in enumerate(links):
        assert (page.parent / link).read_text().endswith(f"report of checkpoint {i}</title>")
    assert html.count('class="no-report"') == 2  # "gone" and the certify run without a report
    assert 'id="eps-overlay"' in html and "Certified accuracy against radius (one run so far)" in html


def test_cli_writes_and_serves_the_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = history(tmp_path)
    assert main(["dashboard", "--db", str(store.path), "--out", str(tmp_path / "site"), "--compare", "run-0",
                 "run-3"]) == 0
    assert "index.html" in capsys.readouterr().out
    html = (tmp_path / "site" / "index.html").read_text()
    overlay = re.search(r'<svg[^>]*id="eps-overlay".*?</svg>', html, re.DOTALL)
    assert overlay and "run-0" in overlay.group(0) and "run-3" in overlay.group(0)
    assert main(["history", "--db", str(store.path), "--model", "mnist <cnn>"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(ROBUST) and "fail" in lines[4] and "40.00%" in lines[4]
    server = make_server(tmp_path / "site", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.urlopen(base, timeout=10) as response:
            assert b"Robustness history" in response.read()
        with urllib.request.urlopen(base + "reports/run-2/report.html", timeout=10) as response:
            assert b"report of checkpoint 2" in response.read()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_browser_draws_the_trend_chart_and_the_run_links(tmp_path: Path) -> None:
    binary = find_chromium()
    page = build_site(history(tmp_path), tmp_path / "site")
    dom = run_chromium(binary, tmp_path, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()).stdout
    sections = re.findall(r'<section class="model" id="([^"]+)"', dom)
    assert len(sections) == 3  # mnist <cnn>, the unnamed run "gone", the certify run
    trend = re.search(r'<svg[^>]*id="trend-evaluate-mnist-cnn[^"]*".*?</svg>', dom, re.DOTALL)
    assert trend, dom[:2000]
    series = dict(re.findall(r'<g class="series-group" data-series="(\w+)">\s*<polyline class="series" '
                             r'points="([^"]+)"', trend.group(0)))
    assert set(series) == {"clean", "robust"}
    robust_y = [float(p.split(",")[1]) for p in series["robust"].split()]
    assert len(robust_y) == len(ROBUST)
    assert robust_y[2] > robust_y[0] > robust_y[1] > robust_y[3]  # SVG y grows downward: the dip at run 3 is lowest
    assert re.search(r'<svg[^>]*id="per-class-evaluate-mnist-cnn', dom)
    links = re.findall(r'<a class="run-link" href="([^"]+)">report</a>', dom)
    assert links == [f"reports/run-{i}/report.html" for i in range(len(ROBUST))]
    shot = tmp_path / "dashboard.png"
    run_chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars",
                 page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1200, 2400)
    assert len(data) > 40_000  # charts drawn: a blank page compresses to a few kilobytes
