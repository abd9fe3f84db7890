"""The status page, served by a real uvicorn and drawn by headless Chromium, shows live counters and calibration."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.report.test_html_browser import find_chromium, run_chromium
from tests.serve.conftest import guard_of, infer_body, live_server


def test_status_page_escapes_the_model_name(make_server) -> None:
    from bastion.serve.status import render_status_page

    server = make_server(model={"name": "<script>alert(1)</script>"})
    page = render_status_page(server.status())
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


@pytest.mark.browser
def test_browser_shows_live_counters_and_the_calibration_summary(make_server, eval_images, tmp_path: Path) -> None:
    binary = find_chromium()
    server = make_server()
    x, _ = eval_images
    with live_server(server) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            guard = guard_of(client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[:30])).json())
            grey = client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[:3] * 0 + 0.5)).json()
        outcomes = [g["outcome"] for g in guard] + [g["outcome"] for g in guard_of(grey)]
        # Server-rendered page, then refreshed by its script from /status.json: both must agree.
        dom = run_chromium(binary, tmp_path, "--virtual-time-budget=3000", "--dump-dom", url + "/").stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert int(re.search(r'data-refreshed="(\d+)"', body).group(1)) >= 1, body  # the script ran and refreshed
    assert "data-error" not in body
    for outcome in ("accept", "fallback"):
        shown = re.search(rf'id="count-{outcome}">(\d+)<', dom).group(1)
        assert int(shown) == outcomes.count(outcome)
    assert int(re.search(r'id="count-total">(\d+)<', dom).group(1)) == 33
    assert re.search(r'id="n-calibration">\s*1000<', dom)
    assert re.search(r'id="target-fpr">0.05<', dom)
    assert "feature-squeezing" in dom and "FeatureSqueezing" in dom
    shot = tmp_path / "status.png"
    with live_server(server) as url:
        run_chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1100,1300", "--hide-scrollbars",
                     "--virtual-time-budget=2000", url + "/")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
