"""Drift that acts: --on-drift once the guarantee breaks, and the authenticated admin recalibration."""

from __future__ import annotations

import pytest
import torch
from starlette.testclient import TestClient

from bastion.serve import Policy, create_app
from bastion.serve.config import GuardSettings
from bastion.serve.security import ApiKey
from tests.serve.conftest import guard_of, infer_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ADMIN = "admin-key-0123456789"


@pytest.mark.parametrize(("on_drift", "outcome", "label"), [
    ("keep", "accept", 7), ("flag", "flag", 7), ("fallback", "fallback", 3), ("reject", "reject", None)])
def test_policy_on_drift_applies_to_unflagged_inputs(on_drift, outcome, label) -> None:
    policy = Policy(GuardSettings(on_drift=on_drift, fallback="label:3", on_flag="flag"), 0.05)
    assert policy.decide(7, {"d": 0.5}).outcome == "accept"
    decision = policy.decide(7, {"d": 0.5}, drifted=True)
    assert (decision.outcome, decision.label) == (outcome, label)
    assert ("no longer holds" in decision.reason) is (on_drift != "keep")
    assert policy.decide(7, {"d": 0.01}, drifted=True).flagged_by == ("d",)


def noisy(x: torch.Tensor) -> torch.Tensor:
    return (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)


def test_broken_guarantee_rejects_until_an_admin_recalibrates(make_server, eval_images) -> None:
    server = make_server(guard={"on_drift": "reject"})
    x, _ = eval_images
    infer, recal = f"/v2/models/{server.name}/infer", "/admin/recalibrate"
    clean = {"calibration": "mnist-sample:eval", "limit": 400}
    with TestClient(create_app(server)) as client:
        assert client.post(recal, json=clean).status_code == 403  # no admin key configured: off
        server.admin_key = ApiKey(ADMIN)
        for i in range(0, 160, 16):
            client.post(infer, json=infer_body(noisy(x[i:i + 16])))
        assert client.get("/status.json").json()["guarantee"]["holds"] is False
        after = client.post(infer, json=infer_body(x[200:216])).json()
        assert all(g["outcome"] == "reject" and "no longer holds" in g["reason"] for g in guard_of(after))
        assert client.post(recal, json=clean).status_code == 401
        assert client.post(recal, json=clean, headers={"x-api-key": "wrong-key-0123456789"}).status_code == 401
        assert client.post(recal, json={"source": "accepted"}, headers={"x-api-key": ADMIN}).status_code == 409
        assert client.post(recal, json={"calibration": "mnist-sample:eval", "limit": 100},
                           headers={"x-api-key": ADMIN}).status_code == 422  # fewer than 2 x drift window
        done = client.post(recal, json=clean, headers={"x-api-key": ADMIN})
        assert done.status_code == 200, done.text
        assert done.json()["calibrated_on"] == 400 and done.json()["guarantee"]["holds"] is True
        status = client.get("/status.json").json()
        assert status["guarantee"] == {"holds": True, "why": status["guarantee"]["why"], "since": 0}
        assert status["guard"]["calibration"] == "mnist-sample:eval (400 images)"
        assert server.guard.conformal[0].n == 400
        again = guard_of(client.post(infer, json=infer_body(x[200:216])).json())
    assert sum(g["outcome"] == "accept" for g in again) >= 14


def test_recalibrating_on_accepted_traffic_is_opt_in(make_server, eval_images) -> None:
    server = make_server(monitor={"keep_accepted": 1000, "drift_window": 100})
    server.admin_key = ApiKey(ADMIN)
    x, _ = eval_images
    with TestClient(create_app(server)) as client:
        for i in range(0, 240, 40):
            client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[i:i + 40]))
        kept = len(server.accepted)
        assert 200 <= kept <= 240
        sent = client.post("/admin/recalibrate", json=infer_body((x[:250] * 255).round(), "UINT8"),
                           headers={"authorization": f"Bearer {ADMIN}"})
        assert sent.status_code == 200 and sent.json()["calibrated_on"] == 250 and len(server.accepted) == 0
        for i in range(240, 480, 40):
            client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[i:i + 40]))
        done = client.post("/admin/recalibrate", json={"source": "accepted"}, headers={"x-api-key": ADMIN})
    assert done.status_code == 200, done.text
    assert done.json()["source"] == f"the last {done.json()['calibrated_on']} accepted inputs"
    assert server.guard.conformal[0].n == done.json()["calibrated_on"] >= 200
