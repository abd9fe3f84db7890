"""`bastion detect`: calibrate runtime detectors on clean data, rate them on attacks and an adaptive attack."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from bastion.cli.common import (
    add_data_options,
    add_model_options,
    add_threat_options,
    check_out_dir,
    load_data_from_args,
    load_model_from_args,
    require,
)
from bastion.cli.resumable import add_resume_options, run_resumable
from bastion.detect.registry import DETECTORS
from bastion.errors import InputError

__all__ = ["format_table", "register", "run"]


def register(commands: Any) -> None:
    """Add the `detect` subcommand."""
    parser = commands.add_parser(
        "detect",
        help="calibrate adversarial-example detectors and measure their detection rates",
        description="Feature squeezing (Xu et al., NDSS 2018), confidence, entropy and margin detectors, each "
        "calibrated on clean images to a false-positive rate; prints the detection rate of each attack's "
        "successful examples and of an adaptive attack that knows the detector (Carlini & Wagner 2017). Writes "
        "detection.json and detection.html to --out; --resume continues an interrupted run.",
    )
    add_model_options(parser)
    add_data_options(parser)
    add_threat_options(parser)
    group = parser.add_argument_group("detection")
    group.add_argument("--calibration", help="clean images to calibrate on, e.g. mnist-sample:train (default: a "
                       "seeded half of --data, the other half held out)")
    group.add_argument("--calibration-limit", type=int, help="use only this many calibration images")
    group.add_argument("--attack", action="append", help="attack whose examples are rated, repeatable (default pgd)")
    group.add_argument("--steps", type=int, help="steps of the rated attacks that take steps (default: theirs)")
    group.add_argument("--fpr", type=float, default=0.05, help="target false-positive rate on clean data (0.05)")
    group.add_argument("--detectors", default=",".join(DETECTORS.names()),
                       help=f"comma-separated detectors: {', '.join(DETECTORS.names())} (default all)")
    group.add_argument("--squeezers", help="feature squeezers, e.g. bit-depth:1,median:2,median:3 (the default, "
                       "Xu et al.'s MNIST choice; bit-depth:5,median:2 for natural images)")
    group.add_argument("--adaptive-steps", type=int, default=100, help="steps of the adaptive attack; 0 skips it")
    group.add_argument("--adaptive-limit", type=int, default=500, help="points the adaptive attack runs on (500)")
    parser.add_argument("--out", default="runs/detect", help="output directory (default runs/detect)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the attacks (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_resume_options(parser)
    parser.set_defaults(handler=run)


def _check(args: argparse.Namespace) -> None:
    require(args, "model", "data")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    if not 0.0 < args.fpr < 1.0:
        raise InputError(f"--fpr must lie strictly between 0 and 1, got {args.fpr:g}")
    if args.adaptive_steps < 0 or args.adaptive_limit < 1:
        raise InputError("--adaptive-steps must be >= 0 and --adaptive-limit >= 1")


def run(args: argparse.Namespace) -> int:
    """Calibrate, rate, attack adaptively, as stages (--resume continues them); write detection.json and .html."""
    _check(args)
    from bastion.evaluate.commands import detect_suite

    stages = detect_suite(  # refuses unknown detectors, squeezers and attacks before any work
        detectors=[name for name in args.detectors.split(",") if name.strip()],
        squeezers=[s for s in args.squeezers.split(",") if s.strip()] if args.squeezers else None,
        adaptive_steps=args.adaptive_steps, fpr=args.fpr, attacks=args.attack or ["pgd"], steps=args.steps,
        calibration=args.calibration, calibration_limit=args.calibration_limit, data_root=args.data_root,
        adaptive_limit=args.adaptive_limit)
    return run_resumable(args, "detect", "detection.json", lambda main: _run(args, stages, main))


def _run(args: argparse.Namespace, stages: list[Any], main: bool) -> int:
    from bastion.evaluate.command_reports import detection_report
    from bastion.evaluate.commands import run_suite
    from bastion.report.pages import render_detection_html
    from bastion.threat import ThreatModel

    loaded = load_model_from_args(args)
    data = load_data_from_args(args)
    threat = ThreatModel(args.norm or "linf", args.eps if args.eps is not None else 0.3)
    run = run_suite(stages, loaded.module, data, threat=threat, seed=args.seed, batch_size=args.batch_size or 256,
                    out=args.out, resume=args.resume, progress=not args.quiet and sys.stderr.isatty())
    if not main:
        return 0
    command = "bastion " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = detection_report(run.ctx, adaptive_steps=args.adaptive_steps, model=loaded.spec,
                              model_fingerprint=loaded.fingerprint, command=command)
    print(format_table(report["detection"]))
    paths = _write(report, Path(args.out), render_detection_html(report))
    run.finish()
    print("\n".join(["", "wrote:", *(f"  {p}" for p in paths)]))
    return 0


def _write(report: dict[str, Any], out: Path, html: str) -> list[Path]:
    """detection.html, then detection.json: the JSON, written last, marks the run finished (--resume)."""
    from bastion._io import write_atomic

    html_path = write_atomic(out / "detection.html", html)
    return [write_atomic(out / "detection.json", json.dumps(report, indent=2, allow_nan=False) + "\n"), html_path]


def _fpr_cell(d: dict[str, Any]) -> str:
    check = d.get("clean_fpr_check") or {}
    if not check.get("ci"):
        return _pct(d["clean_fpr"])
    low, high = check["ci"]
    mark = " MISSED" if check["missed"] else " above" if check["above"] else ""
    return f"{_pct(d['clean_fpr'])} [{low:.1%}-{high:.1%}]{mark}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value:.1%}"


def format_table(section: dict[str, Any]) -> str:
    """The terminal table: per detector, threshold, clean FPR, detection rate per attack, adaptive attack."""
    settings, detectors = section["settings"], section["detectors"]
    attacks = list(settings["attacks"])
    adaptive = settings["adaptive_steps"] > 0
    head = ["detector", "threshold", "held-out FPR [95% CI]", *(f"{a} detected" for a in attacks)]
    head += ["adaptive detected", "adaptive evades"] if adaptive else []
    rows = [head]
    for name, d in detectors.items():
        row = [name, f"{d['threshold']:.4g}", _fpr_cell(d)]
        row += [f"{_pct(d['attacks'][a]['rate'])} ({d['attacks'][a]['n_success']})" for a in attacks]
        if adaptive:
            a = d["adaptive"]
            row += [f"{_pct(a['rate'])} ({a['n_success']})", _pct(a["evasion_rate"])]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"detection at {settings['fpr']:.1%} false positives on clean data; calibrated on "
             f"{settings['n_calibration']} images ({settings['calibration']}), FPR measured on "
             f"{settings['n_held_out']} held-out images; {settings['threat']}"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]
    lines.append("detected: share of the successful adversarial examples flagged (their count in brackets); "
                 "adaptive evades: share of attacked points misclassified and not flagged")
    lines += [f"warning: {w}" for w in section["warnings"]]
    return "\n".join(lines)
