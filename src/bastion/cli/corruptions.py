"""`bastion corruptions`: accuracy under common corruptions per severity, and the mCE against a baseline model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bastion.cli.common import (
    add_data_options,
    add_model_options,
    check_out_dir,
    load_data_from_args,
    load_model_from_args,
    require,
)
from bastion.cli.resumable import add_resume_options, run_resumable
from bastion.errors import InputError

__all__ = ["format_table", "register", "run"]


def register(commands: Any) -> None:
    """Add the `corruptions` subcommand."""
    parser = commands.add_parser(
        "corruptions",
        help="accuracy under common corruptions (noise, blur, JPEG, ...) and the mCE",
        description="Hendrycks & Dietterich's common corruptions (ICLR 2019) at severities 1-5: accuracy per "
        "corruption and severity, and with --baseline-model the mean corruption error normalized by the "
        "baseline's errors. Prints a table and writes corruptions.json to --out; --resume continues an "
        "interrupted run.",
    )
    add_model_options(parser)
    add_data_options(parser)
    group = parser.add_argument_group("corruptions")
    group.add_argument("--corruptions", help="comma-separated names (default: all); see the table's rows")
    group.add_argument("--severities", default="1,2,3,4,5", help="comma-separated severities 0-5 (default 1-5)")
    group.add_argument("--baseline-model", help="model whose errors normalize the corruption errors (mCE)")
    group.add_argument("--baseline-weights", help="state dict for a factory-built baseline model")
    parser.add_argument("--out", default="runs/corruptions", help="output directory (default runs/corruptions)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corruptions' randomness (default 0)")
    add_resume_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Measure the model, then the baseline, as stages (--resume continues them); print the table, write the JSON."""
    require(args, "model", "data")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    try:
        severities = [int(s) for s in args.severities.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--severities takes integers such as 1,3,5, got {args.severities!r}") from None
    from bastion.evaluate.commands import corruptions_suite

    names = [n.strip() for n in args.corruptions.split(",") if n.strip()] if args.corruptions else None
    stages = corruptions_suite(corruptions=names, severities=severities, baseline=args.baseline_model,
                               baseline_weights=args.baseline_weights)  # refuses unknown names before any work
    return run_resumable(args, "corruptions", "corruptions.json", lambda main: _run(args, stages, main))


def _run(args: argparse.Namespace, stages: list[Any], main: bool) -> int:
    from bastion._io import write_atomic
    from bastion.evaluate.command_reports import corruptions_report
    from bastion.evaluate.commands import run_suite

    data = load_data_from_args(args)
    model = load_model_from_args(args).module
    run = run_suite(stages, model, data, seed=args.seed, batch_size=args.batch_size or 256, out=args.out,
                    resume=args.resume)
    if not main:
        return 0
    report = corruptions_report(run.ctx, model=args.model)
    path = write_atomic(Path(args.out) / "corruptions.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    run.finish()
    print(format_table(report))
    print(f"\nwrote: {path}")
    return 0


def _fmt(value: object) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{value:.3f}"


def format_table(report: dict[str, Any]) -> str:
    """Accuracy per corruption (rows) and severity (columns); CE per row and the mCE with a baseline."""
    severities, baseline = report["severities"], report.get("baseline")
    head = f"{'corruption':<16}" + "".join(f"{'s' + str(s):>8}" for s in severities) + f"{'mean':>8}"
    head += f"{'CE':>8}{'rel. CE':>9}" if baseline else ""
    lines = [f"{report['model']} on {report['data']} ({report['n']} points), clean accuracy "
             f"{report['clean_accuracy']:.1%}", head]
    for name, row in report["accuracy"].items():
        line = f"{name:<16}" + "".join(f"{a:>8.1%}" for a in row) + f"{sum(row) / len(row):>8.1%}"
        if baseline:
            line += f"{_fmt(baseline['ce'][name]):>8}{_fmt(baseline['relative_ce'][name]):>9}"
        lines.append(line)
    lines.append(f"mean accuracy over corruptions and severities {report['mean_accuracy']:.1%}")
    if baseline:
        lines.append(f"mCE {_fmt(baseline['mce'])}, relative mCE {_fmt(baseline['relative_mce'])} against "
                     f"{baseline['model']} (clean {baseline['clean_accuracy']:.1%}, mean corrupted "
                     f"{baseline['mean_accuracy']:.1%}); CE < 1 means fewer errors than the baseline")
        undefined = [n for n, v in baseline["relative_ce"].items() if v is None]
        if undefined:
            lines.append(f"relative CE undefined where the baseline makes no errors beyond its clean ones: "
                         f"{', '.join(undefined)}")
    return "\n".join(lines)
