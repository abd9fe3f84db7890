"""`bastion serve`: run the guarded inference server, or (`--check`) report its flag rates and exit."""

from __future__ import annotations

import argparse
import json
import logging
import signal
from typing import Any

from bastion.cli.common import MODEL_FORMS
from bastion.errors import InputError

__all__ = ["register", "run"]

_INSTALL = "bastion serve needs the serve extra: pip install 'bastion[serve]'"


def register(commands: Any) -> None:
    """Add the `serve` subcommand."""
    p = commands.add_parser(
        "serve", help="serve a model behind a calibrated adversarial-input guard (Open Inference Protocol v2)",
        description="An HTTP server (FastAPI + uvicorn) answering the Open Inference Protocol v2 routes and "
        "/predict, with a guard on every request: detector scores as conformal p-values against clean "
        "calibration images, a policy (accept, flag, fall back, reject), micro-batching, Prometheus /metrics, a "
        "drift monitor, a sampled SQLite request log and a status page at /. Settings come from --config "
        "(TOML) and are overridden by the flags. Needs: pip install 'bastion[serve]'.")
    p.add_argument("--config", help="serve.toml (see bastion.serve.config for its tables)")
    g = p.add_argument_group("model")
    g.add_argument("--model", help=f"{MODEL_FORMS} (default zoo:mnist-cnn-at)")
    g.add_argument("--name", help="model name in the /v2/models/NAME routes (default: the --model spec)")
    g.add_argument("--weights", help="state dict for a factory-built model")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    g = p.add_argument_group("guard")
    g.add_argument("--calibration", help="clean held-out images to calibrate on, drawn like the traffic and never "
                   "the model's training data (required, except for zoo models: a seeded 1,000 of their held-out "
                   "mnist-sample:eval); a set sharing images with a known training split is refused")
    g.add_argument("--calibration-limit", type=int, help="use only this many calibration images (seeded subset; at "
                   "least 2 x --drift-window, which the drift monitor needs)")
    g.add_argument("--detector", action="append", help="detector, repeatable: squeeze, confidence, entropy, "
                   "margin (default: squeeze, margin and entropy); each, and each enabled probe, is a conformal "
                   "p-value, and one combined p-value over all of them is flagged at --fpr")
    g.add_argument("--squeezers", help="feature squeezers, e.g. bit-depth:1,median:2,median:3")
    g.add_argument("--fpr", type=float, help="target false-positive rate of a flag on clean inputs (0.01)")
    g.add_argument("--reject-fpr", type=float, help="stricter rate below which inputs are rejected outright")
    g.add_argument("--on-flag", choices=["flag", "fallback", "reject"], help="what flagged inputs get (fallback)")
    g.add_argument("--fallback", help="abstain (default), smooth or label:K")
    g.add_argument("--on-drift", choices=["keep", "flag", "fallback", "reject"], help="what every input gets once "
                   "the guarantee no longer holds (traffic not exchangeable with the calibration set): keep "
                   "deciding as usual, flag all (default), fall back or reject, until POST /admin/recalibrate")
    g.add_argument("--gradient-norm", action="store_true", default=None, help="the input-gradient norm enters the "
                   "decision (one backward pass per input)")
    g.add_argument("--boundary-steps", type=int, help="DeepFool steps estimating the distance to the boundary, "
                   "which then enters the decision")
    g.add_argument("--smoothing-sigma", type=float, help="noise of the smoothed fallback (0.25)")
    g.add_argument("--smoothing-n", type=int, help="most noise samples per input of the smoothed fallback, which "
                   "stops as soon as its anytime-valid test decides (100)")
    g = p.add_argument_group("server")
    g.add_argument("--host", help="address to bind (default 127.0.0.1)")
    g.add_argument("--port", type=int, help="port (default 8000)")
    g.add_argument("--max-batch", type=int, help="largest micro-batch (32)")
    g.add_argument("--max-wait-ms", type=float, help="ignored, kept for old command lines: an input that finds the "
                   "model idle runs at once, and inputs that arrive while it is busy are batched")
    g.add_argument("--no-batching", action="store_true", help="one input per forward pass")
    g.add_argument("--api-key-file", help="file holding the API key clients must send")
    g.add_argument("--admin-key-file", help="file holding the key of the admin routes (POST /admin/recalibrate); "
                   "default: the API key; with neither the admin routes are off")
    g.add_argument("--public-status", action="store_true", default=None, help="serve /metrics, /status.json and "
                   "the status page without the API key (they publish the detector's calibration quantiles; "
                   "by default they need the key when one is set)")
    g.add_argument("--rate-limit", type=float, help="inputs per second per key (or client address), on average: a "
                   "token bucket that lets --burst through at once (default: no limit); one token is taken "
                   "before the body is read, the rest per image after; a 429 says Retry-After")
    g.add_argument("--burst", type=int, help="requests a key may send at once before --rate-limit applies (100)")
    g.add_argument("--max-body-bytes", type=int, help="largest request body (8000000)")
    g.add_argument("--max-image-side", type=int, help="largest uploaded image side in pixels (4096)")
    g.add_argument("--max-items", type=int, help="most images in one infer request (64)")
    g = p.add_argument_group("monitoring")
    g.add_argument("--request-log", help="SQLite request log to write (read it with bastion requests)")
    g.add_argument("--log-sample", type=float, help="share of inputs logged (1.0)")
    g.add_argument("--false-alarm", type=float, help="probability that traffic drawn like the calibration set ever "
                   "breaks the guarantee, over any horizon (0.01): the guarantee monitor alarms at an e-value of "
                   "1 / this")
    g.add_argument("--keep-accepted", type=int, help="keep the last N accepted inputs so that POST "
                   "/admin/recalibrate {\"source\": \"accepted\"} may recalibrate on them (default 0: off; "
                   "accepted traffic can poison the calibration set)")
    g.add_argument("--drift-window", type=int, help="requests per drift-test window (200)")
    g.add_argument("--drift-run-length", type=int, help="expected clean requests before a false drift alarm")
    g.add_argument("--check-report", help="a --check report shown on the status page")
    g = p.add_argument_group("check")
    g.add_argument("--check", action="store_true", help="report flag rates on clean, benign-shifted and attacked "
                   "held-out images through the HTTP API, then exit")
    g.add_argument("--check-data", default="mnist-sample:eval", help="held-out images (mnist-sample:eval)")
    g.add_argument("--check-limit", type=int, default=500, help="held-out images used (500)")
    g.add_argument("--check-out", help="write the report as JSON here")
    g.add_argument("--eps", type=float, default=0.3, help="Linf radius of the checked attacks (0.3)")
    p.set_defaults(handler=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    detectors = None
    if args.detector:
        detectors = [d.strip() for item in args.detector for d in item.split(",") if d.strip()]
    return {
        "model": {"spec": args.model, "name": args.name, "weights": args.weights, "device": args.device},
        "guard": {"calibration": args.calibration, "calibration_limit": args.calibration_limit,
                  "detectors": detectors, "fpr": args.fpr, "reject_fpr": args.reject_fpr, "on_flag": args.on_flag,
                  "on_drift": args.on_drift, "fallback": args.fallback, "gradient_norm": args.gradient_norm,
                  "boundary_steps": args.boundary_steps, "smoothing_sigma": args.smoothing_sigma,
                  "smoothing_n": args.smoothing_n,
                  "squeezers": [s for s in args.squeezers.split(",") if s.strip()] if args.squeezers else None},
        "batching": {"max_batch": 1 if args.no_batching else args.max_batch,
                     "max_wait_ms": 0.0 if args.no_batching else args.max_wait_ms},
        "limits": {"max_body_bytes": args.max_body_bytes, "max_image_side": args.max_image_side,
                   "max_items": args.max_items},
        "security": {"api_key_file": args.api_key_file, "admin_key_file": args.admin_key_file,
                     "public_status": args.public_status,
                     "rate_per_second": args.rate_limit, "burst": args.burst},
        "monitor": {"false_alarm": args.false_alarm, "keep_accepted": args.keep_accepted,
                    "request_log": args.request_log, "log_sample": args.log_sample,
                    "drift_window": args.drift_window, "drift_run_length": args.drift_run_length,
                    "check_report": args.check_report},
        "host": args.host, "port": args.port,
    }


def run(args: argparse.Namespace) -> int:
    """Build the server from the config and flags; serve until SIGTERM/SIGINT, or run the check."""
    try:
        import uvicorn

        from bastion.serve import build_server, create_app, load_config
        from bastion.serve.check import format_check, run_check
    except ImportError as error:
        raise InputError(f"{_INSTALL} (missing: {error.name})") from None
    config = load_config(args.config, _overrides(args))
    if args.check:
        from bastion.epsrange import check_eps

        check_eps("linf", args.eps)  # before the guard is calibrated
    server = build_server(config)
    if args.check:
        # Shifted and attacked traffic is meant to trip the drift monitor here: no alarm per window.
        logging.getLogger("bastion.serve.server").setLevel(logging.ERROR)
        report = run_check(server, create_app, data=args.check_data, limit=args.check_limit, eps=args.eps)
        print(format_check(report))
        if args.check_out:
            from pathlib import Path

            from bastion._io import write_atomic

            print(f"wrote: {write_atomic(Path(args.check_out), json.dumps(report, indent=2) + chr(10))}")
        return 0
    logging.getLogger("bastion").setLevel(logging.INFO)
    # uvicorn drains on SIGTERM, then re-raises the signal under the handler that was there before it
    # started: a handler that does nothing lets the process end normally, with status 0, not 143.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(create_app(server), host=config.host, port=config.port, log_level="info",
                timeout_graceful_shutdown=30)
    return 0
