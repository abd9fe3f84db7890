"""Every malformed request gets a 4xx with a one-line reason, and the server keeps serving."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from bastion.serve import create_app
from tests.serve.conftest import infer_body
from tests.serve.test_app import png

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def huge_png(width: int, height: int) -> bytes:
    """A small file declaring a huge image (IHDR only, then a few compressed zero rows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) \
        + chunk(b"IEND", b"")


def test_each_malformed_request_gets_a_4xx_with_its_reason(make_server, eval_images, tmp_path: Path) -> None:
    server = make_server(limits={"max_items": 8, "max_image_side": 1024, "max_body_bytes": 400_000})
    x, y = eval_images
    name = server.name
    infer = f"/v2/models/{name}/infer"
    good = png(x[0])
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    cases = [
        # (what, method, path, kwargs, status, words in the message)
        ("not an image", "/predict", {"files": {"image": ("a", b"hello world", "image/png")}}, 400, "not an image"),
        ("truncated png", "/predict", {"files": {"image": ("a", good[: len(good) // 2], "image/png")}}, 400,
         "truncated"),
        ("huge dimensions", "/predict", {"files": {"image": ("a", huge_png(5_000, 5_000), "image/png")}}, 413,
         "5000x5000"),
        ("decompression bomb", "/predict", {"files": {"image": ("a", huge_png(50_000, 50_000), "image/png")}}, 413,
         "too large"),
        ("gif", "/predict", {"files": {"image": ("a", buffer.getvalue(), "image/gif")}}, 415, "GIF"),
        ("no image field", "/predict", {"files": {"other": ("a", good, "image/png")}}, 400, "'image'"),
        ("wrong channel count", infer, {"json": infer_body(torch.rand(1, 3, 28, 28))}, 422, "channel"),
        ("NaN", infer, {"content": json.dumps(infer_body(torch.full((1, 1, 28, 28), float("nan")))).encode()},
         422, "NaN"),
        ("out of range", infer, {"json": infer_body(torch.full((1, 1, 28, 28), 2.0))}, 422, "[0, 1]"),
        ("wrong shape", infer, {"json": infer_body(torch.rand(1, 1, 32, 32))}, 422, "28x28"),
        ("data size", infer, {"json": {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                                   "data": [0.5] * 10}]}}, 422, "10 values"),
        ("unknown model", "/v2/models/resnet/infer", {"json": infer_body(x[:1])}, 404, "unknown model 'resnet'"),
        ("unknown model metadata", "/v2/models/resnet", None, 404, "unknown model"),
        ("bad json", infer, {"content": b'{"inputs": [', "headers": {"content-type": "application/json"}}, 400,
         "not valid JSON"),
        ("not an infer request", infer, {"json": {"input": []}}, 422, "inputs"),
        ("bad datatype", infer, {"json": infer_body(x[:1], "BOOL")}, 422, "datatype"),
        ("strings as data", infer, {"json": {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                                         "data": ["a"] * 784}]}}, 422, "numbers"),
        ("too many images", infer, {"json": infer_body(x[:9])}, 413, "at most 8"),
        ("body too large", infer, {"content": b" " * 500_000, "headers": {"content-type": "application/json"}},
         413, "larger than 400000"),
        ("unknown route", "/v3/nothing", None, 404, "Not Found"),
    ]
    with TestClient(create_app(server)) as client:
        for what, path, kwargs, status, words in cases:
            response = client.post(path, **kwargs) if kwargs is not None else client.get(path)
            assert response.status_code == status, (what, response.text)
            message = response.json()["error"]
            assert words in message and "\n" not in message, (what, message)
        ok = client.post("/predict", files={"image": ("d", good, "image/png")})
        assert ok.status_code == 200 and ok.json()["model_label"] == int(y[0])
        ok = client.post(infer, json=infer_body(x[:2]))
        assert ok.status_code == 200 and len(ok.json()["outputs"][0]["data"]) == 2
        text = client.get("/metrics").text
    assert 'bastion_requests_total{route="/v2/models/{name}/infer",status="422"}' in text


def test_api_key_and_rate_limit(make_server, eval_images, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("s3cret-key-0123456789\n")
    server = make_server(security={"api_key_file": str(key), "rate_per_second": 0.001, "burst": 3})
    x, _ = eval_images
    infer = f"/v2/models/{server.name}/infer"
    with TestClient(create_app(server)) as client:
        assert client.post(infer, json=infer_body(x[:1])).status_code == 401
        wrong = client.post(infer, json=infer_body(x[:1]), headers={"X-API-Key": "s3cret-key-0123456780"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]
        bearer = client.post(infer, json=infer_body(x[:2]), headers={"Authorization": "Bearer s3cret-key-0123456789"})
        assert bearer.status_code == 200
        ok = client.post(infer, json=infer_body(x[:1]), headers={"X-API-Key": "s3cret-key-0123456789"})
        assert ok.status_code == 200
        limited = client.post(infer, json=infer_body(x[:1]), headers={"X-API-Key": "s3cret-key-0123456789"})
        assert limited.status_code == 429 and "rate limit" in limited.json()["error"]
        assert client.get("/v2/health/live").status_code == 200  # health stays open
