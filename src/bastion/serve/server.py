"""The server's state: model, guard, batcher, metrics, drift monitor, request log; built from a config."""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bastion.data import load_dataset
from bastion.detect import make_detector
from bastion.errors import InputError
from bastion.models import load_model
from bastion.serve.batching import MicroBatcher
from bastion.serve.config import ServeConfig
from bastion.serve.drift import DriftMonitor
from bastion.serve.guarantee import GuaranteeMonitor
from bastion.serve.guard import Guard, Verdict
from bastion.serve.layout import adopt_channels_last
from bastion.serve.metrics import ServeMetrics
from bastion.serve.payloads import RequestError
from bastion.serve.provenance import image_keys, refuse_training_overlap, resolve_calibration
from bastion.serve.requestlog import LogRow, RequestLog
from bastion.serve.security import ApiKey, RateLimiter, read_key_file

__all__ = ["GuardedServer", "build_server"]

_log = logging.getLogger(__name__)


@dataclass
class GuardedServer:
    """Everything the routes use. `process` runs on the batcher's worker thread.

    Attributes:
        config: The settings.
        guard: The calibrated guard.
        input_shape: (C, H, W) of the model's inputs.
        fingerprint: sha256 of the weights.
        metrics: Prometheus metrics.
        drift: The windowed drift monitor (a diagnostic).
        request_log: The sampled request log, or None.
        api_key: The key check, or None when the server is open.
        limiter: The rate limiter, or None.
        check_report: A `bastion serve --check` report shown on the status page, or None.
        guarantee: The anytime-valid monitor of the guard's guarantee (built from the guard).
        admin_key: The admin routes' key check, or None (then the API key's, if any).
        calibration_keys: `image_keys` of the calibration images (`--check` leaves them out).
        accepted: The last accepted inputs (only with `monitor.keep_accepted` > 0).
        auth_failures: Failed keys per client address (429 once a client has failed too often).
    """

    config: ServeConfig
    guard: Guard
    input_shape: tuple[int, int, int]
    fingerprint: str
    metrics: ServeMetrics
    drift: DriftMonitor
    request_log: RequestLog | None = None
    api_key: ApiKey | None = None
    limiter: RateLimiter | None = None
    check_report: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)
    ready: bool = False
    batcher: MicroBatcher[Verdict] = field(init=False)
    log_writer: ThreadPoolExecutor = field(init=False)
    guarantee: GuaranteeMonitor = field(init=False)
    admin_key: ApiKey | None = None
    calibration_keys: frozenset[bytes] = frozenset()
    accepted: deque[Tensor] = field(init=False)
    auth_failures: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        b = self.config.batching
        self._new_guarantee()
        self.accepted = deque(maxlen=max(1, self.config.monitor.keep_accepted))
        sec = self.config.security
        self.auth_failures = RateLimiter(sec.auth_failure_rate, sec.auth_failure_burst, what="failed-key limit")
        self.batcher = MicroBatcher(self.process, b.max_batch)
        self.log_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-log")

    @property
    def name(self) -> str:
        """The served model name."""
        return self.config.model.served_name

    def _new_guarantee(self) -> None:
        self.guarantee = GuaranteeMonitor({c.name: c.n for c in self.guard.signals}, self.guard.monitored_levels(),
                                          self.config.monitor.false_alarm, seed=self.config.guard.seed)

    def process(self, x: Tensor) -> Sequence[Verdict]:
        """Guard one micro-batch and record its metrics, the guarantee and drift (worker thread).

        The guarantee as it stood before the batch decides whether `on_drift` applies to it.
        """
        result = self.guard.run(x, drifted=not self.guarantee.state().holds)
        m = self.metrics
        names = [c.name for c in self.guard.signals]
        if self.guarantee.update(np.array([[v.p_values[name] for name in names] for v in result.verdicts])):
            _log.warning("the guarantee no longer holds: %s", self.guarantee.state().why)
        m.observe_guarantee(self.guarantee.state())
        if self.config.monitor.keep_accepted:
            self.accepted.extend(x[i].detach().cpu() for i, v in enumerate(result.verdicts) if v.outcome == "accept")
        m.batch_size.observe(len(x))
        for stage, seconds in result.seconds.items():
            m.stage.labels(stage=stage).observe(seconds)
        m.observe_verdicts(result.verdicts)
        alarms = 0
        for v in result.verdicts:
            alarms += self.drift.update({"confidence": v.confidence, "margin": v.margin})
        if alarms:
            _log.warning("drift alarm: %s", self.drift.state().statistics)
        m.observe_drift(self.drift.state(), alarms)
        return result.verdicts

    def recalibrate(self, x: Tensor, source: str) -> dict[str, Any]:
        """Calibrate the guard anew on clean images (N, C, H, W) and restart both monitors (worker thread).

        Raises:
            RequestError: 422 when the images are too few for the drift monitor or the flag level.
        """
        mon = self.config.monitor
        need = DriftMonitor.min_reference(mon.drift_window)
        if len(x) < need:
            raise RequestError(422, f"recalibration needs at least {need} images (2 x drift window "
                               f"{mon.drift_window}), got {len(x)}")
        settings = self.config.guard.model_copy(update={"calibration": source})
        try:
            refuse_training_overlap(self.config.model.spec, x)
            guard = Guard.calibrate(self.guard.model, self.guard.detectors, x, settings)
        except InputError as error:
            raise RequestError(422, str(error)) from None
        self.drift = DriftMonitor(guard.reference, mon.drift_window, mon.drift_run_length, seed=settings.seed)
        self.config = self.config.model_copy(update={"guard": settings})
        self.guard, self.calibration_keys = guard, frozenset(image_keys(x))
        self._new_guarantee()
        self.accepted.clear()
        self.metrics.observe_guarantee(self.guarantee.state())
        _log.warning("recalibrated on %d images (%s); the guarantee monitor restarts", len(x), source)
        return {"calibrated_on": len(x), "source": source, "guarantee": self.guarantee.state().public()}

    def public_summary(self) -> dict[str, Any]:
        """The guard's settings as scalars, without calibration quantiles (the model metadata's parameters)."""
        g = self.config.guard
        return {"fingerprint": self.fingerprint, "fpr": g.fpr, "flag_level": self.guard.flag_level,
                "on_flag": g.on_flag, "on_drift": g.on_drift, "fallback": g.fallback,
                "signals": ",".join(c.name for c in self.guard.signals)}

    def record(self, route: str, verdicts: Sequence[Verdict], seconds: float) -> None:
        """Count the answered inputs and queue the sampled ones for the request log."""
        for v in verdicts:
            self.metrics.inputs.labels(outcome=v.outcome).inc()
        if self.request_log is None:
            return
        rows = [LogRow(self.name, route, v.input_hash, v.outcome, v.label, v.model_label, v.reason, v.confidence,
                       v.margin, v.p_values, v.scores, seconds * 1000.0) for v in verdicts if self.request_log.keep()]
        if rows:
            self.log_writer.submit(self._write_log, rows)

    def _write_log(self, rows: list[LogRow]) -> None:
        try:
            if self.request_log is not None:
                self.request_log.write(rows)
        except Exception:  # a full disk must not take the server down; the metrics still count
            _log.exception("could not write %d rows to the request log", len(rows))

    def close(self) -> None:
        """Flush the request log (called after the batcher has stopped); the server can be started again."""
        self.log_writer.shutdown(wait=True)
        self.log_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-log")

    def status(self) -> dict[str, Any]:
        """The status page's data."""
        drift = self.drift.state()
        return {"model": self.name, "spec": self.config.model.spec, "fingerprint": self.fingerprint,
                "uptime_seconds": time.time() - self.started, "ready": self.ready,
                "guarantee": self.guarantee.state().public(), "requests": self.metrics.counts(),
                "guarantee_details": self._guarantee_details(), "guard": self.guard.summary(),
                "batching": self.config.batching.model_dump(),
                "drift": {"window": drift.window, "run_length": drift.run_length, "statistics": drift.statistics,
                          "thresholds": drift.thresholds, "windows": drift.windows_done, "alarms": drift.alarms,
                          "alarm": drift.alarm, "filled": drift.filled},
                "check": self.check_report}


    def _guarantee_details(self) -> dict[str, Any]:
        g = self.guarantee.state()
        return {"inputs": g.inputs, "e_value": g.e_value, "threshold": g.threshold, "false_alarm": g.false_alarm,
                "flag_rate_bound": g.flag_rate_bound, "levels": self.guarantee.levels}


def build_server(config: ServeConfig, *, model: nn.Module | None = None, fingerprint: str | None = None,
                 calibration: Tensor | None = None) -> GuardedServer:
    """Load the model and the calibration images, calibrate the guard and the drift monitor.

    The guarantees hold for traffic exchangeable with the calibration images: calibrate on
    held-out images of the deployment distribution, not on the model's training set (on which the
    model is more confident than on new inputs). Without `guard.calibration`, a model whose
    held-out split is known (the zoo's) calibrates on it, any other is refused; calibration images
    that overlap a known training split are refused (`bastion.serve.provenance`).

    Args:
        config: The settings.
        model: A model already loaded (tests); None loads `config.model.spec`.
        fingerprint: Its fingerprint when `model` is given.
        calibration: Calibration images (N, C, H, W) in [0, 1]; None loads `config.guard.calibration`.
    """
    m, g = config.model, config.guard
    if model is None:
        loaded = load_model(m.spec, weights=m.weights, mean=m.mean, std=m.std, device=m.device)
        model, fingerprint = loaded.module, loaded.fingerprint
    if calibration is None:
        spec, limit = resolve_calibration(m.spec, g.calibration, g.calibration_limit)
        data = load_dataset(spec, limit=limit, seed=g.seed if limit else None)
        calibration = data.images.float() / 255.0 if data.images.dtype == torch.uint8 else data.images.float()
        if g.calibration is None:
            _log.info("calibrating on %s (%d images), held out from %s's training data", spec, len(data), m.spec)
            g = g.model_copy(update={"calibration": f"{spec} ({len(data)} seeded)", "calibration_limit": limit})
            config = config.model_copy(update={"guard": g})
    x = calibration
    refuse_training_overlap(m.spec, x)
    model.eval()
    adopt_channels_last(model, x[:64])
    detectors = [make_detector(name, list(g.squeezers) if g.squeezers else None) for name in g.detectors]
    guard = Guard.calibrate(model, detectors, x, g)
    mon = config.monitor
    drift = DriftMonitor(guard.reference, mon.drift_window, mon.drift_run_length, seed=g.seed)
    metrics = ServeMetrics(m.served_name, fingerprint or "unknown", [c.name for c in guard.signals])
    log = None
    if mon.request_log:
        log = RequestLog(mon.request_log, sample=mon.log_sample, seed=g.seed)
        log.create()
    sec = config.security
    api_key = ApiKey(read_key_file(sec.api_key_file)) if sec.api_key_file else None
    admin_key = ApiKey(read_key_file(sec.admin_key_file)) if sec.admin_key_file else None
    limiter = RateLimiter(sec.rate_per_second, sec.burst) if sec.rate_per_second else None
    check = None
    if mon.check_report:
        try:
            check = json.loads(Path(mon.check_report).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"cannot read the check report {mon.check_report}: {error}") from None
    shape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    return GuardedServer(config, guard, shape, fingerprint or "unknown", metrics, drift, log, api_key, limiter, check,
                         admin_key=admin_key, calibration_keys=frozenset(image_keys(x)))
