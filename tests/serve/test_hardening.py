"""Hardening: nested JSON, failed keys limited per address before the body, Retry-After, ops behind the key,
metrics of every response, OIP v2 version routes, scalar parameters, requested outputs, strict inputs."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import torch
from starlette.testclient import TestClient

from bastion.serve import create_app
from tests.serve.conftest import guard_of, infer_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
KEY = "s3cret-key-0123456789"


def keyed(make_server, tmp_path: Path, **security):
    path = tmp_path / "key"
    path.write_text(KEY)
    return make_server(security={"api_key_file": str(path), **security})


def test_deeply_nested_json_gets_a_4xx(make_server) -> None:
    server = make_server()
    infer = f"/v2/models/{server.name}/infer"
    bodies = [b"[" * 100_000, b'{"inputs": ' + b"[" * 100_000, b'{"inputs": [{"name": "input", "shape": [1], '
              b'"datatype": "FP32", "data": ' + b"[" * 900 + b"0.5" + b"]" * 900 + b"}]}"]
    with TestClient(create_app(server), raise_server_exceptions=False) as client:
        for body in bodies:
            response = client.post(infer, content=body, headers={"content-type": "application/json"})
            assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
            assert "\n" not in response.json()["error"]


def test_failed_keys_are_limited_per_address_before_the_body_is_read(make_server, tmp_path: Path) -> None:
    server = keyed(make_server, tmp_path, auth_failure_burst=20, auth_failure_rate=0.01)
    infer = f"/v2/models/{server.name}/infer"
    with TestClient(create_app(server)) as client:
        codes = []
        for i in range(150):
            response = client.post(infer, content=b"{not json", headers={"X-API-Key": f"wrong-key-{i:012d}"})
            codes.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1 and "failed-key limit" in response.json()["error"]
        # The key is checked before the body (401, not the 400 of the bad JSON), 20 times, then 429 only.
        assert codes == [401] * 20 + [429] * 130
        # Even the right key is refused while this address is locked out: guessing gains nothing.
        assert client.post(infer, json=infer_body(torch.zeros(1, 1, 28, 28)),
                           headers={"X-API-Key": KEY}).status_code == 429


def test_the_rate_limit_is_applied_before_the_body_and_says_retry_after(make_server) -> None:
    server = make_server(security={"rate_per_second": 0.01, "burst": 2})
    infer = f"/v2/models/{server.name}/infer"
    with TestClient(create_app(server)) as client:
        assert client.post(infer, json=infer_body(torch.zeros(2, 1, 28, 28))).status_code == 200
        limited = client.post(infer, content=b"{not json", headers={"content-type": "application/json"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 90


def test_metrics_status_and_page_need_the_key_and_metadata_hides_the_quantiles(make_server, tmp_path: Path) -> None:
    server = keyed(make_server, tmp_path)
    basic = "Basic " + base64.b64encode(f"ops:{KEY}".encode()).decode()
    with TestClient(create_app(server)) as client:
        for path in ("/metrics", "/status.json", "/"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
            assert client.get(path, headers={"Authorization": basic}).status_code == 200, path
        assert client.get("/").headers["WWW-Authenticate"].startswith("Basic")
        meta = client.get(f"/v2/models/{server.name}").json()
        assert "q90" not in json.dumps(meta) and "median" not in json.dumps(meta)
        assert meta["parameters"]["fingerprint"] == server.fingerprint
    public = keyed(make_server, tmp_path, public_status=True)
    with TestClient(create_app(public)) as client:
        assert client.get("/status.json").status_code == 200 and client.get("/metrics").status_code == 200


def test_metrics_count_requests_and_inputs_apart_and_every_status(make_server, eval_images) -> None:
    server = make_server(limits={"max_body_bytes": 400_000})
    x, _ = eval_images
    infer = f"/v2/models/{server.name}/infer"
    with TestClient(create_app(server), raise_server_exceptions=False) as client:
        assert client.post(infer, json=infer_body(x[:5])).status_code == 200
        assert client.get("/nothing").status_code == 404
        assert client.get("/predict").status_code == 405
        assert client.post(infer, content=b" " * 500_000).status_code == 413
        server.guard.run = lambda *a, **k: 1 / 0  # a bug in the guard: the request gets a 500
        assert client.post(infer, json=infer_body(x[:1])).status_code == 500
        text = client.get("/metrics").text
    count = {(m[1], m[2]): float(m[3]) for m in
             re.finditer(r'bastion_requests_total\{route="([^"]*)",status="(\d+)"\} (\S+)', text)}
    assert count[("/v2/models/{name}/infer", "200")] == 1 and count[("/v2/models/{name}/infer", "500")] == 1
    assert count[("unmatched", "404")] == 1 and count[("/predict", "405")] == 1
    assert count[("unmatched", "413")] == 1  # refused by the body limit before routing
    inputs = sum(float(v) for v in re.findall(r'bastion_inputs_total\{outcome="\w+"\} (\S+)', text))
    assert inputs == 5 and re.search(r"^process_cpu_seconds_total \S+", text, re.M)


def test_oip_version_routes_scalar_parameters_outputs_and_strict_inputs(make_server, eval_images) -> None:
    server = make_server()
    x, _ = eval_images
    name, version = server.name, server.fingerprint[:12]
    with TestClient(create_app(server)) as client:
        assert client.get(f"/v2/models/{name}/versions/{version}").json()["versions"] == [version]
        assert client.get(f"/v2/models/{name}/versions/{version}/ready").json()["ready"] is True
        assert client.get(f"/v2/models/{name}/versions/nope").status_code == 404
        body = {**infer_body(x[:3]), "outputs": [{"name": "label"}]}
        answer = client.post(f"/v2/models/{name}/versions/{version}/infer", json=body).json()
        assert [o["name"] for o in answer["outputs"]] == ["label"] and len(guard_of(answer)) == 3
        assert all(isinstance(v, str | bool | int | float) for v in answer["parameters"].values())
        assert answer["parameters"]["guarantee_holds"] is True
        meta = client.get(f"/v2/models/{name}").json()["parameters"]
        assert all(isinstance(v, str | bool | int | float) for v in meta.values())
        infer = f"/v2/models/{name}/infer"
        one = infer_body(x[:1])["inputs"][0]
        cases = [({**one, "datatype": "fp32"}, "upper case"),
                 ({**one, "data": [str(v) for v in one["data"]]}, "numbers"), ({**one, "data": [True] * 784}, "number"),
                 ({**one, "name": "image"}, "unknown input 'image'")]
        for tensor, words in cases:
            response = client.post(infer, json={"inputs": [tensor]})
            assert response.status_code == 422 and words in response.json()["error"], (words, response.text)
        response = client.post(infer, json={"inputs": [one], "outputs": [{"name": "logits"}]})
        assert response.status_code == 422 and "unknown output 'logits'" in response.json()["error"]
