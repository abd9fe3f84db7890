"""Prometheus metrics of the server, named by Prometheus's conventions (base units, `_total` counters).

Each server owns its `CollectorRegistry`, so several servers (or tests) in one process never share
counters. Requests and inputs are counted apart: `bastion_requests_total{route,status}` counts every
HTTP response (404, 405, 413, 429 and 500 included; `bastion.serve.middleware.CountRequests`),
`bastion_inputs_total{outcome}` the guard's answers. The registry carries the `process_*` collector
(CPU, memory, file descriptors).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from bastion.serve.drift import DriftState
from bastion.serve.guarantee import GuaranteeState
from bastion.serve.guard import Verdict

__all__ = ["ServeMetrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_P_VALUES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)


class ServeMetrics:
    """The counters, histograms and gauges of one server.

    Args:
        model_name: Served name, in the model-info gauge.
        fingerprint: sha256 of the weights (`LoadedModel.fingerprint`).
        detectors: Detector names (pre-creates their label sets, so series exist from the start).
    """

    def __init__(self, model_name: str, fingerprint: str, detectors: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, str], Any] = {}
        self._drift_windows = -1
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter("bastion_requests", "HTTP requests answered, by route template and status",
                                ["route", "status"], registry=r)
        self.inputs = Counter("bastion_inputs", "Inputs answered by the guard, by outcome", ["outcome"], registry=r)
        self.duration = Histogram("bastion_request_duration_seconds", "Time from receiving a request to answering it",
                                  ["route"], buckets=_LATENCY, registry=r)
        self.stage = Histogram("bastion_guard_stage_seconds", "Time of each guard stage per batch (model: the "
                               "one pass of the model and the detectors; gradient, boundary, smoothing)", ["stage"],
                               buckets=_LATENCY, registry=r)
        self.batch_size = Histogram("bastion_batch_size", "Inputs per micro-batch", buckets=_BATCH, registry=r)
        self.flags = Counter("bastion_flags", "Inputs flagged, by detector", ["detector"], registry=r)
        self.fallbacks = Counter("bastion_fallbacks", "Inputs answered by the fallback", registry=r)
        self.score = Histogram("bastion_detector_p_value", "Conformal p-values of the detectors' scores",
                               ["detector"], buckets=_P_VALUES, registry=r)
        self.drift_statistic = Gauge("bastion_drift_statistic", "KS statistic of the last completed window",
                                     ["signal"], registry=r)
        self.drift_threshold = Gauge("bastion_drift_threshold", "Alarm threshold of the drift statistic",
                                     ["signal"], registry=r)
        self.drift_alarm = Gauge("bastion_drift_alarm", "1 while the last completed window alarmed", registry=r)
        self.drift_alarms = Counter("bastion_drift_alarms", "Windows that raised a drift alarm", registry=r)
        self.guarantee = Gauge("bastion_guarantee_holds", "1 while traffic stays exchangeable with the calibration "
                               "set (the conformal test martingale has not alarmed), else 0", registry=r)
        self.guarantee_e_value = Gauge("bastion_guarantee_e_value", "The conformal test martingale: evidence "
                                       "against exchangeability (alarm at 1 / delta)", registry=r)
        self.guarantee.set(1)
        self.guarantee_e_value.set(1)
        self.info = Gauge("bastion_model_info", "The served model (value 1)", ["model", "fingerprint"], registry=r)
        self.info.labels(model=model_name, fingerprint=fingerprint).set(1)
        for name in detectors:
            self.flags.labels(detector=name)
            self.score.labels(detector=name)
        for outcome in ("accept", "flag", "fallback", "reject"):
            self.inputs.labels(outcome=outcome)

    def observe_drift(self, state: DriftState, alarms_now: int) -> None:
        """Export the monitor's statistics and thresholds, and count the windows that alarmed since the last call."""
        if state.windows_done == self._drift_windows and not alarms_now:
            return  # no window completed: nothing changed
        self._drift_windows = state.windows_done
        for name, value in state.statistics.items():
            self.drift_statistic.labels(signal=name).set(value)
            self.drift_threshold.labels(signal=name).set(state.thresholds[name])
        self.drift_alarm.set(1.0 if state.alarm else 0.0)
        if alarms_now:
            self.drift_alarms.inc(alarms_now)

    def observe_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        """Count flags by signal and fallbacks, and observe every p-value (label children cached: hot path)."""
        for v in verdicts:
            for name in v.flagged_by:
                self._child(self.flags, name).inc()
            for name, p in v.p_values.items():
                self._child(self.score, name).observe(p)
            if v.outcome == "fallback":
                self.fallbacks.inc()

    def _child(self, metric: Counter | Histogram, detector: str) -> Any:
        key = (id(metric), detector)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(detector=detector)
        return child

    def observe_guarantee(self, state: GuaranteeState) -> None:
        """Export whether the guarantee holds and the martingale's value."""
        self.guarantee.set(1.0 if state.holds else 0.0)
        self.guarantee_e_value.set(state.e_value)

    def counts(self) -> dict[str, float]:
        """Current values of the input counters by outcome (for the status page)."""
        out: dict[str, float] = {}
        for metric in self.inputs.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["outcome"]] = sample.value
        return out

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
