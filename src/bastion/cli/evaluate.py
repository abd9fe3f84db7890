"""`bastion evaluate`: the whole protocol on a model and data, written as report.json and report.html."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.cli.common import (
    add_data_options,
    add_model_options,
    add_run_options,
    add_threat_options,
    check_out_dir,
    take_over_out_dir,
)
from bastion.cli.history_options import HISTORY_KEYS, add_history_options, prepare_history
from bastion.cli.resumable import earlier_run
from bastion.errors import InputError

if TYPE_CHECKING:
    from bastion.distributed import World
    from bastion.evaluate.flags import Flag

__all__ = ["build_parser", "register", "run_evaluate_command"]

_NOT_CONFIG = {"command", "handler", "config", "print_config", "quiet", "overwrite", *HISTORY_KEYS}


def register(commands: Any) -> None:
    """List `evaluate` in `bastion --help`; `run_evaluate_command` parses it, since its flags come from the stages."""
    commands.add_parser("evaluate", help="run the evaluation protocol and write a report", add_help=False)


def build_parser() -> argparse.ArgumentParser:
    """The run-level options, then each stage's own flags, generated from the stage registry (`Stage.flags`)."""
    from bastion.defenses.ensemble import MODES
    from bastion.evaluate.stage_flags import all_flags, flag_owners
    from bastion.evaluate.suites import SUITES

    parser = argparse.ArgumentParser(
        prog="bastion evaluate",
        description="Clean accuracy, an FGSM sanity check, the main attack of the suite (by default the fast "
        "suite's apgd-fast, escalated on evidence and audited by AutoAttack on a sample; PGD with restarts in the "
        "pgd and autoattack suites), the gradient-masking checks, the accuracy-vs-eps curve and per-class "
        "robustness; writes report.json and report.html. Flags override --config; a TOML file takes the same "
        "names as keys (curve_points = 5) and [stages.NAME] tables of one stage's settings.",
    )
    parser.add_argument("--config", help="TOML file of options (keys as the flags, e.g. eps = \"8/255\")")
    parser.add_argument("--print-config", action="store_true", help="print a TOML file of every option at its "
                        "default, grouped by the stage that owns it, and exit")
    add_model_options(parser)
    add_data_options(parser)
    add_threat_options(parser)
    run = parser.add_argument_group("suite, defenses and output")
    run.add_argument("--suite", choices=list(SUITES), help="fast (default): apgd-fast (ODI, margin APGD, MALT-ranked "
                     "targets), escalating by itself on evidence and audited by AutoAttack on a sample, for about a "
                     "tenth of AutoAttack's cost; autoattack: PGD and the AutoAttack ensemble, the standard protocol; "
                     "pgd: PGD only (quick, not enough for a claim); extended: AutoAttack plus the threat models "
                     "beyond the Lp ball; deployed: no gradients (Square, HopSkipJump, transfer from --surrogate), "
                     "chosen by itself for an .onnx model")
    run.add_argument("--defense", action="append", help="a defense before (or after) the model, repeatable, in "
                     "order: name:key=value,... e.g. jpeg:quality=75 (bastion list defenses)")
    run.add_argument("--ensemble", nargs="+", metavar="MODEL", help="evaluate an ensemble of these model specs "
                     "(instead of --model); each member is reported next to it")
    run.add_argument("--ensemble-mode", choices=MODES.names(), help="how members combine (logits)")
    run.add_argument("--out", help="directory for report.json and report.html (default runs/)")
    run.add_argument("--resume", action="store_true", default=None,
                     help="continue an interrupted run from the stages saved in --out")
    run.add_argument("--overwrite", action="store_true", help="replace the report of an earlier run in --out")
    add_run_options(parser)
    add_history_options(parser)
    flags, owners = all_flags(), flag_owners()
    for kind in dict.fromkeys(owners.values()):
        group = parser.add_argument_group(f"{kind} stage")
        for name, flag in flags.items():
            if owners[name] == kind and flag.type is not dict:
                add_flag(group, flag)
    return parser


def add_flag(group: Any, flag: Flag) -> None:
    """One stage flag as an argparse option (its value is parsed and checked by the flag, after parsing)."""
    shown = "" if flag.default in (None, False, "") else f" (default {flag.default})"
    options: dict[str, Any] = {"dest": flag.name, "default": None, "help": flag.help + shown}
    if flag.type is bool:
        options["action"] = argparse.BooleanOptionalAction if flag.default else "store_true"
    else:
        options["type"] = flag.type if flag.type in (int, float) and flag.parse is None else str
        options["metavar"] = flag.metavar
        if flag.options():
            options["choices"] = flag.options()
    group.add_argument(flag.cli, **options)


def run_evaluate_command(argv: list[str]) -> int:
    """Parse `bastion evaluate ...` and run it (its flags need the stage registry, so not at `bastion --help`)."""
    args = build_parser().parse_args(argv)
    if args.print_config:
        from bastion.evaluate.template import config_template

        print(config_template(), end="")
        return 0
    return run(args)


def options_from(args: argparse.Namespace) -> dict[str, Any]:
    """Merge the TOML file (if any) with the flags given; flags win."""
    from bastion.evaluate import read_toml

    options: dict[str, Any] = read_toml(args.config) if args.config else {}
    for key, value in vars(args).items():
        if key in _NOT_CONFIG or value is None:
            continue
        options[key] = value
    options.pop("quiet", None)
    options.pop("gate", None)  # the regression gate's thresholds, read by prepare_history
    return options


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the summary table, write the reports; under torchrun each process takes its share."""
    from bastion import distributed

    with distributed.session(args.device) as world:
        return _evaluate(args, world)


def _evaluate(args: argparse.Namespace, world: World) -> int:
    """Every rank runs the stages on its chunks of points; rank 0 checks --out, writes and records the run."""
    from bastion import distributed
    from bastion.evaluate import EvalConfig, evaluate
    from bastion.report import write_html
    from bastion.report.terminal import format_result

    options = options_from(args)
    resume = bool(options.pop("resume", False))  # how to run, not what: not part of the config
    config = EvalConfig.from_options(options)
    history = prepare_history(args, out=config.out, config=args.config) if world.is_main else None
    out = check_out_dir(config.out)
    finished = None
    if world.is_main:
        finished = _guard_earlier_run(out, resume=resume, overwrite=args.overwrite)
        take_over_out_dir(out)
    if distributed.broadcast_object(finished is not None):
        if finished is not None:
            print(f"the evaluation in {out} is finished: its report is {finished} (and report.html beside it); "
                  "nothing was run again (--overwrite runs it again)")
        return 0
    command = "bastion " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    progress = world.is_main and not args.quiet  # a bar in a terminal, a line every ~30 s elsewhere
    result = evaluate(config, resume=resume, progress=progress, command=command)
    if history is None:
        return 0
    json_path = result.save(out / "report.json")
    html_path = write_html(result.to_dict(), out / "report.html")
    print(format_result(result.to_dict()))
    print(f"\nreport: {json_path}\n        {html_path}")
    return history.record("evaluate", result.to_dict(), out=out, report=html_path, artifacts=[json_path])


def _guard_earlier_run(out: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Never replace an earlier report unasked; returns the report of a finished run that --resume finds, else None.

    --resume continues an interrupted run (the runner refuses a state whose settings changed) and
    leaves a finished one alone (its report.json, no saved stages: the report's history run is
    recorded already); --overwrite replaces it.
    """
    report = earlier_run(out, "report.json", resume=resume, overwrite=overwrite, command="evaluate")
    if report is not None and not (out / "report.html").exists():  # killed between the two files
        import json

        from bastion.report import write_html

        try:
            write_html(json.loads(report.read_text(encoding="utf-8")), out / "report.html")
        except (OSError, ValueError) as error:
            raise InputError(f"--resume: {report} of the finished run cannot be read ({error}); give "
                             "--overwrite to run it again") from None
    return report
