"""One calibrated guard for the serve tests (zoo:mnist-cnn-at, 1,000 calibration images), servers built on it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from bastion.data import load_dataset  # noqa: E402
from bastion.detect import make_detector  # noqa: E402
from bastion.models import load_model  # noqa: E402
from bastion.serve import DriftMonitor, Guard, GuardedServer, ServeConfig, build_server, load_config  # noqa: E402
from bastion.serve.metrics import ServeMetrics  # noqa: E402

CALIBRATION = {"guard": {"calibration": "mnist-sample:eval (seeded half)", "fpr": 0.05},
               "model": {"spec": "zoo:mnist-cnn-at", "device": "cpu"},
               "monitor": {"drift_window": 200, "drift_run_length": 50_000}}


@pytest.fixture(scope="session")
def split() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """mnist-sample:eval (2,000 images the model never trained on) split at random: calibration, held out."""
    data = load_dataset("mnist-sample:eval")
    order = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(0))
    x, y = data.images.float()[order] / 255.0, data.labels[order]
    return {"calibration": (x[:1000], y[:1000]), "held_out": (x[1000:], y[1000:])}


@pytest.fixture(scope="session")
def base_server(split) -> GuardedServer:
    return build_server(load_config(None, CALIBRATION), calibration=split["calibration"][0])


@pytest.fixture(scope="session")
def eval_images(split) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,000 held-out images and labels."""
    return split["held_out"]


@pytest.fixture
def make_server(base_server: GuardedServer, split) -> Callable[..., GuardedServer]:
    """A fresh server sharing the calibrated guard; overrides as in `ServeConfig.with_overrides`.

    Probes or other detectors are calibrated anew on the same calibration images.
    """

    def make(**overrides: Any) -> GuardedServer:
        config: ServeConfig = base_server.config.with_overrides(overrides) if overrides else base_server.config
        g, c = base_server.guard, config.guard
        if c.gradient_norm or c.boundary_steps or c.detectors != base_server.config.guard.detectors:
            detectors = [make_detector(name, list(c.squeezers) if c.squeezers else None) for name in c.detectors]
            guard = Guard.calibrate(g.model, detectors, split["calibration"][0], c)
        else:
            guard = Guard(g.model, g.detectors, g.conformal, c, g.num_classes, g.reference, combiner=g.combiner)
        return build_parts(config, guard, base_server)

    return make


def build_parts(config: ServeConfig, guard: Guard, base: GuardedServer) -> GuardedServer:
    from bastion.serve.requestlog import RequestLog
    from bastion.serve.security import ApiKey, RateLimiter, read_key_file

    mon, sec = config.monitor, config.security
    same = (mon.drift_window, mon.drift_run_length) == (base.drift.window, base.drift.run_length)
    drift = base.drift.fresh() if same else DriftMonitor(guard.reference, mon.drift_window, mon.drift_run_length)
    log = RequestLog(mon.request_log, sample=mon.log_sample) if mon.request_log else None
    if log is not None:
        log.create()
    return GuardedServer(config, guard, base.input_shape, base.fingerprint,
                         ServeMetrics(config.model.served_name, base.fingerprint, [c.name for c in guard.signals]),
                         drift, log, ApiKey(read_key_file(sec.api_key_file)) if sec.api_key_file else None,
                         RateLimiter(sec.rate_per_second, sec.burst) if sec.rate_per_second else None,
                         calibration_keys=base.calibration_keys)


def infer_body(x: torch.Tensor, datatype: str = "FP32") -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": datatype,
                        "data": x.flatten().tolist()}]}


def guard_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Each input's guard details from an infer response (a JSON string: OIP parameters are scalars)."""
    return list(json.loads(body["parameters"]["guard"]))


def guarantee_of(body: dict[str, Any]) -> dict[str, Any]:
    """The guarantee of an infer response, from its three scalar parameters."""
    p = body["parameters"]
    return {"holds": p["guarantee_holds"], "why": p["guarantee_why"], "since": p["guarantee_since"]}


def load_model_module() -> torch.nn.Module:
    return load_model("zoo:mnist-cnn-at", device="cpu").module


@contextmanager
def live_server(server: GuardedServer) -> Iterator[str]:
    """Serve `server` with a real uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    from bastion.serve import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(create_app(server), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
