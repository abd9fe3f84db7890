"""The HTTP API through Starlette's TestClient: OIP v2 routes, /predict, metrics, status, policy outcomes."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from bastion.serve import create_app
from tests.serve.conftest import guard_of, infer_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def png(x: torch.Tensor, size: int | None = None, fmt: str = "PNG", mode: str = "L") -> bytes:
    image = Image.fromarray(np.rint(x[0].numpy() * 255).astype(np.uint8)).convert(mode)
    if size:
        image = image.resize((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_oip_routes_and_infer_answers_the_model_labels(make_server, eval_images) -> None:
    server = make_server()
    x, y = eval_images
    with TestClient(create_app(server)) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        meta = client.get(f"/v2/models/{server.name}").json()
        assert meta["name"] == "zoo:mnist-cnn-at" and meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
        assert meta["parameters"]["fingerprint"] == server.fingerprint
        assert client.get(f"/v2/models/{server.name}/ready").json()["ready"] is True
        response = client.post(f"/v2/models/{server.name}/infer", json={**infer_body(x[:16]), "id": "r1"})
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == "r1" and body["model_version"] == server.fingerprint[:12]
        labels = body["outputs"][0]["data"]
        with torch.no_grad():
            expected = server.guard.model(x[:16]).argmax(1).tolist()
        guard = guard_of(body)
        assert [g["model_label"] for g in guard] == expected
        assert sum(a == b for a, b in zip(expected, y[:16].tolist(), strict=True)) >= 14
        for g, label in zip(guard, labels, strict=True):
            assert g["outcome"] in ("accept", "fallback")
            assert label == (g["model_label"] if g["outcome"] == "accept" else -1)
            assert 0 < g["p_values"]["feature-squeezing"] <= 1 and 0 < g["confidence"] <= 1 and g["margin"] >= 0
            assert (g["outcome"] == "accept") is (g["p_values"]["combined"] > 0.05)
        # UINT8 data is the same image.
        uint8 = client.post(f"/v2/models/{server.name}/infer", json=infer_body((x[:2] * 255).round(), "UINT8"))
        assert [g["model_label"] for g in guard_of(uint8.json())] == expected[:2]


def test_predict_takes_png_and_jpeg_of_any_size_and_mode(make_server, eval_images) -> None:
    server = make_server()
    x, y = eval_images
    with TestClient(create_app(server)) as client:
        for data, kind in [(png(x[0]), "image/png"), (png(x[0], 56), "image/png"),
                           (png(x[0], fmt="JPEG"), "image/jpeg"), (png(x[0], 40, mode="RGB"), "image/png")]:
            r = client.post("/predict", files={"image": ("d", data, kind)})
            assert r.status_code == 200, r.text
            assert r.json()["model_label"] == int(y[0])
        raw = client.post("/predict", content=png(x[1]), headers={"content-type": "image/png"})
        assert raw.status_code == 200 and raw.json()["model_label"] == int(y[1])


def test_metrics_and_status_count_the_outcomes(make_server, eval_images) -> None:
    server = make_server()
    x, _ = eval_images
    with TestClient(create_app(server)) as client:
        client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[:40]))
        client.post(f"/v2/models/{server.name}/infer", json=infer_body(torch.zeros(1, 1, 28, 28).add(0.5)))
        text = client.get("/metrics").text
        status = client.get("/status.json").json()
    counts = {m.group(1): float(m.group(2)) for m in re.finditer(r'bastion_inputs_total\{outcome="(\w+)"\} (\S+)',
                                                                   text)}
    assert sum(counts[o] for o in ("accept", "flag", "fallback", "reject")) == 41
    assert status["requests"]["accept"] == counts["accept"] and counts["accept"] >= 30
    assert re.search(r'bastion_batch_size_sum (\S+)', text).group(1) == "41.0"
    assert f'fingerprint="{server.fingerprint}"' in text
    assert 'bastion_drift_threshold{signal="margin"}' in text and "bastion_request_duration_seconds_bucket" in text
    assert 'bastion_guard_stage_seconds_count{stage="model"}' in text
    flags = {m.group(1): float(m.group(2)) for m in re.finditer(r'bastion_flags_total\{detector="([\w-]+)"\} (\S+)',
                                                                  text)}
    assert set(flags) == {"feature-squeezing", "margin", "entropy"}
    fallbacks = float(re.search(r"^bastion_fallbacks_total (\S+)", text, re.M).group(1))
    assert fallbacks == counts["fallback"] and max(flags.values()) <= fallbacks <= sum(flags.values())


@pytest.mark.parametrize(("on_flag", "fallback", "outcome", "label"), [
    ("flag", "abstain", "flag", "model"), ("fallback", "label:3", "fallback", 3),
    ("fallback", "abstain", "fallback", -1), ("reject", "abstain", "reject", -1),
    ("fallback", "smooth", "fallback", "smoothed")])
def test_policy_decides_flagged_inputs(make_server, on_flag, fallback, outcome, label) -> None:
    server = make_server(guard={"on_flag": on_flag, "fallback": fallback, "smoothing_n": 20})
    # A grey square: feature squeezing moves its prediction a lot (p-value at the floor).
    x = torch.full((1, 1, 28, 28), 0.5)
    with TestClient(create_app(server)) as client:
        g = client.post(f"/v2/models/{server.name}/infer", json=infer_body(x)).json()
    verdict, answered = guard_of(g)[0], g["outputs"][0]["data"][0]
    assert "feature-squeezing" in verdict["flagged_by"], verdict
    assert verdict["outcome"] == outcome and "p=" in verdict["reason"]
    expected = {"model": verdict["model_label"], "smoothed": verdict["smoothed_label"]}.get(label, label)
    assert answered == (-1 if expected is None else expected)
    if label == "smoothed":
        assert verdict["smoothed_label"] is not None


def test_probes_report_gradient_norm_and_boundary_distance(make_server, eval_images) -> None:
    server = make_server(guard={"gradient_norm": True, "boundary_steps": 3})
    x, _ = eval_images
    with TestClient(create_app(server)) as client:
        g = guard_of(client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[:4])).json())
        text = client.get("/metrics").text
    assert all(v["gradient_norm"] > 0 and v["boundary_distance"] > 0 for v in g)
    assert 'stage="gradient"' in text and 'stage="boundary"' in text


def test_reject_level_overrides_a_flag(make_server) -> None:
    from bastion.serve import Policy

    server = make_server(guard={"on_flag": "flag", "reject_fpr": 0.01})
    policy = server.guard.policy
    # One combined p-value over the signals: the whole rates, not split among them.
    assert isinstance(policy, Policy) and policy.reject_level == 0.01 and policy.flag_level == 0.05
    assert policy.decide(7, {"d": 0.03}, None).outcome == "flag"
    assert policy.decide(7, {"d": 0.005}, None).outcome == "reject"
    assert policy.decide(7, {"d": 0.5}, None).label == 7
    with TestClient(create_app(server)) as client:
        body = client.post(f"/v2/models/{server.name}/infer", json=infer_body(torch.full((1, 1, 28, 28), 0.5))).json()
    verdict = guard_of(body)[0]
    assert verdict["outcome"] == "reject" and body["outputs"][0]["data"] == [-1]
    assert verdict["label"] is None and "reject level" in verdict["reason"]
