"""Settings of `bastion serve`: one frozen pydantic model, read from TOML and overridden by flags.

A `serve.toml` has one table per section below; every key is optional:

    [model]     spec = "zoo:mnist-cnn-at"   name = "mnist"   device = "cpu"
    [guard]     calibration = "npz:heldout.npz"   detectors = ["squeeze", "margin", "entropy"]   fpr = 0.01
                on_flag = "fallback"   on_drift = "flag"   fallback = "abstain"   reject_fpr = 0.001
    [batching]  max_batch = 32
    [limits]    max_body_bytes = 8000000   max_image_side = 4096   max_items = 64
    [security]  api_key_file = "KEY"   admin_key_file = "ADMIN_KEY"   rate_per_second = 50   burst = 100
                public_status = false   auth_failure_rate = 0.1   auth_failure_burst = 20
    [monitor]   drift_window = 200   drift_run_length = 100000   request_log = "serve.db"   log_sample = 0.1
                false_alarm = 0.01   keep_accepted = 0
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bastion.errors import InputError
from bastion.serve.drift import DriftMonitor
from bastion.tomlfile import read_toml_document

__all__ = ["BatchingSettings", "GuardSettings", "LimitSettings", "ModelSettings", "MonitorSettings",
           "SecuritySettings", "ServeConfig", "load_config"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class ModelSettings(BaseModel):
    """The served model: a `bastion.models.load_model` spec, the name clients use, the device."""

    model_config = _FROZEN
    spec: str = "zoo:mnist-cnn-at"
    name: str | None = None
    weights: str | None = None
    device: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def served_name(self) -> str:
        """The name in the `/v2/models/{name}` routes (the spec unless set)."""
        return self.name or self.spec


class GuardSettings(BaseModel):
    """Detectors, their calibration, the optional probes, and the policy.

    `fpr` is the target false-positive rate on clean inputs of the flag decision, one combined
    conformal p-value over every signal (the detectors, and the gradient-norm and boundary-distance
    probes when enabled; `bastion.serve.combined`); `reject_fpr` (optional, smaller) sets a stricter level below which a
    request is rejected outright. `on_flag` says what a flagged request gets: "flag" (the answer and
    a warning), "fallback" (the `fallback` answer: "abstain", "smooth" or "label:K"), or "reject".
    `on_drift` says what every input gets once the guarantee no longer holds: "keep" (decide as
    usual), "flag", "fallback" or "reject".
    """

    model_config = _FROZEN
    calibration: str | None = None  # None: the model's held-out split when known (zoo), else refused
    calibration_limit: int | None = Field(default=None, ge=1)  # its minimum depends on the drift window
    detectors: tuple[str, ...] = ("squeeze", "margin", "entropy")
    squeezers: tuple[str, ...] | None = None
    fpr: float = Field(default=0.01, gt=0.0, lt=1.0)
    reject_fpr: float | None = Field(default=None, gt=0.0, lt=1.0)
    on_flag: Literal["flag", "fallback", "reject"] = "fallback"
    on_drift: Literal["keep", "flag", "fallback", "reject"] = "flag"
    fallback: str = "abstain"
    gradient_norm: bool = False
    boundary_steps: int = Field(default=0, ge=0, le=50)
    smoothing_sigma: float = Field(default=0.25, gt=0.0)
    smoothing_n: int = Field(default=100, ge=1)  # the sequential test's budget of estimation samples
    smoothing_n0: int = Field(default=16, ge=1)  # selection samples (the class tested)
    smoothing_alpha: float = Field(default=0.001, gt=0.0, lt=1.0)
    smoothing_always: bool = False
    seed: int = 0

    @field_validator("fallback")
    @classmethod
    def _fallback(cls, value: str) -> str:
        if value not in ("abstain", "smooth") and not re.fullmatch(r"label:\d+", value):
            raise ValueError("fallback must be abstain, smooth or label:K")
        return value

    @model_validator(mode="after")
    def _levels(self) -> GuardSettings:
        if self.reject_fpr is not None and self.reject_fpr >= self.fpr:
            raise ValueError(f"reject_fpr ({self.reject_fpr:g}) must be smaller than fpr ({self.fpr:g})")
        return self

    @property
    def uses_smoothing(self) -> bool:
        """Whether requests need the smoothed prediction."""
        return self.smoothing_always or self.fallback == "smooth"


class BatchingSettings(BaseModel):
    """Micro-batching: dispatch at once when the model is idle, gather only while it is busy.

    An input that finds the model idle runs at once; inputs that arrive while it is busy go
    together, up to `max_batch`. `max_wait_ms` is accepted for old configs and ignored.
    """

    model_config = _FROZEN
    max_batch: int = Field(default=32, ge=1, le=4096)
    max_wait_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)


class LimitSettings(BaseModel):
    """Limits that keep one request from taking the server down."""

    model_config = _FROZEN
    max_body_bytes: int = Field(default=8_000_000, ge=1_000)
    max_image_side: int = Field(default=4096, ge=1)
    max_items: int = Field(default=64, ge=1)
    resize: bool = True


class SecuritySettings(BaseModel):
    """API key (read from a file, compared in constant time), the admin routes' key, a per-key rate limit.

    The admin routes (`/admin/recalibrate`) take `admin_key_file`'s key, else the API key; with
    neither they are off. With a key, `/metrics`, `/status.json` and the status page (which
    publish the calibration quantiles) need it too, unless `public_status`. Failed keys are limited
    per client address: `auth_failure_burst` at once, then `auth_failure_rate` per second, checked
    before the body is read.
    """

    model_config = _FROZEN
    api_key_file: str | None = None
    admin_key_file: str | None = None
    public_status: bool = False
    auth_failure_rate: float = Field(default=0.1, gt=0.0)
    auth_failure_burst: int = Field(default=20, ge=1)
    rate_per_second: float | None = Field(default=None, gt=0.0)
    burst: int = Field(default=100, ge=1)


class MonitorSettings(BaseModel):
    """The guarantee monitor's false-alarm probability, drift monitor windows and the sampled SQLite request log.

    `false_alarm` is the probability that clean traffic, drawn like the calibration set, ever breaks
    the guarantee (over any horizon; `bastion.serve.guarantee`). `keep_accepted` > 0 keeps the
    last accepted inputs so that an admin may recalibrate on them: opt-in, because an attacker whose
    inputs were accepted then poisons the calibration set.
    """

    model_config = _FROZEN
    false_alarm: float = Field(default=0.01, gt=0.0, lt=1.0)
    keep_accepted: int = Field(default=0, ge=0, le=100_000)  # opt-in: accepted inputs kept to recalibrate on
    drift_window: int = Field(default=200, ge=20)
    drift_run_length: int = Field(default=100_000, ge=100)
    request_log: str | None = None
    log_sample: float = Field(default=1.0, ge=0.0, le=1.0)
    check_report: str | None = None


class ServeConfig(BaseModel):
    """Everything `bastion serve` needs, grouped as in the TOML file."""

    model_config = _FROZEN
    model: ModelSettings = ModelSettings()
    guard: GuardSettings = GuardSettings()
    batching: BatchingSettings = BatchingSettings()
    limits: LimitSettings = LimitSettings()
    security: SecuritySettings = SecuritySettings()
    monitor: MonitorSettings = MonitorSettings()
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @model_validator(mode="after")
    def _enough_calibration(self) -> ServeConfig:
        limit, window = self.guard.calibration_limit, self.monitor.drift_window
        if limit is not None and limit < DriftMonitor.min_reference(window):
            raise ValueError(f"--calibration-limit (guard.calibration_limit) {limit} is too small: the drift monitor "
                             f"needs at least {DriftMonitor.min_reference(window)} calibration images (2 x "
                             f"--drift-window {window}); give --calibration-limit "
                             f"{DriftMonitor.min_reference(window)} or more, or a smaller --drift-window (>= 20)")
        return self

    def with_overrides(self, overrides: dict[str, dict[str, Any] | Any]) -> ServeConfig:
        """A copy with some settings replaced: {"guard": {"fpr": 0.05}, "port": 9000}; None values are dropped."""
        data = self.model_dump()
        for key, value in overrides.items():
            if isinstance(value, dict):
                data[key].update({k: v for k, v in value.items() if v is not None})
            elif value is not None:
                data[key] = value
        return _validate(data, "the command-line options")


def _validate(data: dict[str, Any], source: str) -> ServeConfig:
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f"{'.'.join(str(p) for p in first['loc'])}: " for _ in first["loc"][:1])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InputError(f"{source}: {where}{message}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> ServeConfig:
    """Read a serve.toml (or the defaults when `path` is None) and apply `overrides`.

    Raises:
        InputError: for a missing or unreadable file, bad TOML, or a setting out of range.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml_document(path)
    config = _validate(data, str(path) if path else "defaults")
    return config.with_overrides(overrides) if overrides else config
