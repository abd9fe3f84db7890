"""The load benchmark's parts work (no timing here): the bare server answers like the model, the CPU reader reads."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
from starlette.testclient import TestClient

from tests.serve.conftest import infer_body

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_serve.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bare_server_answers_the_models_labels_and_the_helpers_work(base_server, eval_images) -> None:
    bench = _bench()
    x, _ = eval_images
    with TestClient(bench.bare_app()) as client:
        body = json.dumps(infer_body((x[:3] * 255).round(), "UINT8")).encode()
        labels = client.post(bench.PATH, content=body).json()["outputs"][0]["data"]
    with torch.no_grad():
        assert labels == base_server.guard.model(x[:3]).argmax(1).tolist()
    assert bench.split(10, 4) == [3, 3, 2, 2] and sum(bench.split(64, 4)) == 64
    assert bench.cpu_seconds(os.getpid()) > 0
