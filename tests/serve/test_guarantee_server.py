"""The guarantee in the server: held in /status.json, /metrics, the status page and every response; broken by shift."""

from __future__ import annotations

import re

import pytest
import torch
from starlette.testclient import TestClient

from bastion.serve import create_app
from tests.serve.conftest import guarantee_of, infer_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_clean_traffic_keeps_the_guarantee_and_shifted_traffic_breaks_it(make_server, eval_images) -> None:
    server = make_server(monitor={"false_alarm": 0.01})
    x, _ = eval_images
    infer = f"/v2/models/{server.name}/infer"
    with TestClient(create_app(server)) as client:
        for start in range(0, 320, 40):
            body = client.post(infer, json=infer_body(x[start:start + 40])).json()
            assert guarantee_of(body)["holds"] is True
        status = client.get("/status.json").json()
        assert status["guarantee"] == {"holds": True, "why": status["guarantee"]["why"], "since": 0}
        assert "no evidence" in status["guarantee"]["why"] and status["guarantee_details"]["inputs"] == 320
        assert re.search(r"^bastion_guarantee_holds 1\.0", client.get("/metrics").text, re.M)
        # Heavy noise: feature squeezing's p-values collapse, far more than 5% of inputs are flagged.
        noisy = (x[320:480] + 0.5 * torch.randn(160, 1, 28, 28, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        answers = [client.post(infer, json=infer_body(noisy[i:i + 16])).json() for i in range(0, 160, 16)]
        status = client.get("/status.json").json()
        page = client.get("/").text
        metrics = client.get("/metrics").text
    guarantee = status["guarantee"]
    assert guarantee["holds"] is False and 320 < guarantee["since"] <= 480 and "not exchangeable" in guarantee["why"]
    assert guarantee_of(answers[-1]) == guarantee
    assert guarantee_of(answers[0])["holds"] is (guarantee_of(answers[0])["since"] == 0)
    assert re.search(r"^bastion_guarantee_holds 0\.0", metrics, re.M)
    assert 'id="guarantee" class="banner alarm"' in page and "no longer holds" in page


def test_the_flag_rate_bound_is_on_the_status_page(make_server) -> None:
    server = make_server()
    with TestClient(create_app(server)) as client:
        page = client.get("/").text
        details = client.get("/status.json").json()["guarantee_details"]
    level, bounds = server.guard.flag_level, details["flag_rate_bound"]
    assert set(bounds) == {"feature-squeezing", "margin", "entropy"} and details["levels"][0] == level
    # Each signal's conditional bound exceeds the level by the estimation error of 1,000 points.
    assert all(level < b < 2 * level for b in bounds.values()), bounds
    assert 'class="banner ok"' in page and all(f"{b:.2%}" in page for b in bounds.values())
