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
from bastion.errors import InputError

if TYPE_CHECKING:
    from bastion.distributed import World

__all__ = ["register"]

_NOT_CONFIG = {"command", "handler", "config", "quiet", "overwrite", *HISTORY_KEYS}


def register(commands: Any) -> None:
    """Add the `evaluate` subcommand; every option can also come from a TOML file (--config)."""
    parser = commands.add_parser(
        "evaluate",
        help="run the evaluation protocol and write a report",
        description="Clean accuracy, an FGSM sanity check, the main attack of the suite (by default the fast "
        "suite's apgd-fast, escalated on evidence and audited by AutoAttack on a sample; PGD with restarts in the "
        "pgd and autoattack suites), the gradient-masking checks, the accuracy-vs-eps curve and per-class "
        "robustness; writes report.json and report.html. Flags override --config.",
    )
    parser.add_argument("--config", help="TOML file of options (keys as the flags, e.g. eps = \"8/255\")")
    add_model_options(parser)
    add_data_options(parser)
    add_threat_options(parser)
    attack = parser.add_argument_group("attacks")
    attack.add_argument("--steps", type=int, help="PGD steps, in the suites that run PGD (pgd, autoattack, "
                        "extended; default 20); apgd-fast takes --aa-steps")
    attack.add_argument("--restarts", type=int, help="PGD random restarts, in the suites that run PGD "
                        "(default 5)")
    attack.add_argument("--rel-step", type=float, help="PGD step size as a fraction of eps (default 2.5/steps)")
    attack.add_argument("--loss", help="attack loss: ce (default), cw (C&W margin) or dlr (Croce & Hein's "
                        "difference of logits ratio)")
    attack.add_argument("--fgsm", action=argparse.BooleanOptionalAction, default=None, help="FGSM sanity check")
    attack.add_argument("--suite", choices=["autoattack", "pgd", "extended", "deployed", "fast"],
                        help="fast (default): apgd-fast (ODI, margin APGD, MALT-ranked targets), escalating by itself "
                        "on evidence and audited by AutoAttack on a sample, for about a tenth of AutoAttack's cost; "
                        "autoattack: PGD and the AutoAttack ensemble, the standard protocol, for numbers comparable "
                        "with published AutoAttack results; pgd: PGD only (quick, not enough for a claim); "
                        "extended: AutoAttack plus the threat models beyond the Lp ball (patch, spatial, "
                        "corruptions, one-pixel, universal, HopSkipJump); deployed: no gradients (Square, "
                        "HopSkipJump, transfer from --surrogate), chosen by itself for an .onnx model")
    attack.add_argument("--extended-train-data", help="data spec the extended suite trains its patch and universal "
                        "perturbation on (default: the first half of the evaluated points; the second half measures)")
    attack.add_argument("--aa-steps", type=int, help="iterations of AutoAttack's gradient attacks and of apgd-fast "
                        "(default 100)")
    attack.add_argument("--aa-queries", type=int, help="Square's query budget in AutoAttack (default 5000)")
    attack.add_argument("--min-norm", help="also run a minimal-norm attack (fab or cw) without a radius bound and "
                        "report the norms it finds")
    attack.add_argument("--aa-version", choices=["standard", "plus", "rand"], help="AutoAttack version (standard)")
    defense = parser.add_argument_group("defenses and adaptive attacks")
    defense.add_argument("--defense", action="append", help="a defense before (or after) the model, repeatable, in "
                         "order: name:key=value,... e.g. jpeg:quality=75 (jpeg, bit-depth, round, median, "
                         "gaussian, resize-pad, saturate, quantize-output)")
    defense.add_argument("--ensemble", nargs="+", metavar="MODEL", help="evaluate an ensemble of these model specs "
                         "(instead of --model); each member is reported next to it")
    defense.add_argument("--ensemble-mode", choices=["logits", "probs", "vote"], help="how members combine (logits)")
    defense.add_argument("--adaptive", action="store_true", default=None, help="run the adaptive attacks (BPDA, EOT, "
                         "transfer, Square) even if no gradient-masking check fires")
    defense.add_argument("--surrogate", metavar="MODEL", help="surrogate model spec for transfer attacks")
    defense.add_argument("--surrogate-weights", metavar="FILE",
                         help="state dict of a factory-built --surrogate (with an .onnx --model, --weights is taken "
                              "as the surrogate's)")
    defense.add_argument("--eot-samples", type=int, help="draws per EOT gradient for randomized models (10)")
    detection = parser.add_argument_group("run-time detection")
    detection.add_argument("--detect", action="store_true", default=None, help="calibrate the detectors (feature "
                           "squeezing, confidence, entropy, margin) on clean data and report their detection rates "
                           "of FGSM, PGD and an adaptive attack")
    detection.add_argument("--detect-fpr", type=float, help="detectors' false-positive rate on clean data (0.05)")
    detection.add_argument("--detect-calibration", metavar="DATA", help="clean data the thresholds are calibrated on "
                           "(default: half of the evaluated points)")
    smoothing = parser.add_argument_group("certification (randomized smoothing)")
    smoothing.add_argument("--certify", action="store_true", default=None,
                           help="also certify each point by randomized smoothing and attack the smoothed "
                           "classifier with SmoothAdv (L2 threat models)")
    smoothing.add_argument("--sigma", type=float, help="smoothing noise standard deviation (default 0.25)")
    smoothing.add_argument("--n0", type=int, help="selection samples per point (default 100; 16 with --sequential)")
    smoothing.add_argument("--n", type=int, help="estimation samples per point (default 10000); with --sequential "
                           "the most a point may draw (default 30000)")
    smoothing.add_argument("--alpha", type=float, help="certificate error probability (default 0.001)")
    smoothing.add_argument("--sequential", action="store_true", default=None,
                           help="decide certification at the table's radii and the threat model's with anytime-valid "
                           "tests, each point stopping as soon as its answer is known (Voracek & Hein 2024)")
    report = parser.add_argument_group("curve and report")
    report.add_argument("--curve-points", type=int, help="points of the accuracy-vs-eps curve (default 9, 0 = none)")
    report.add_argument("--curve-max", help="largest eps of the curve (default 2 x eps)")
    report.add_argument("--curve-restarts", type=int, help="PGD restarts per curve point (default 1)")
    report.add_argument("--class-floor", type=float, help="flag classes with robust accuracy under this")
    report.add_argument("--gallery", type=int, help="adversarial examples shown in the HTML report (default 8)")
    report.add_argument("--out", help="directory for report.json and report.html (default runs/)")
    report.add_argument("--resume", action="store_true", default=None,
                        help="continue an interrupted run from the stages saved in --out")
    report.add_argument("--overwrite", action="store_true", help="replace the report of an earlier run in --out")
    add_run_options(parser)
    add_history_options(parser)
    parser.set_defaults(handler=run)


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

    config = EvalConfig.from_options(options_from(args))
    history = prepare_history(args, out=config.out, config=args.config) if world.is_main else None
    out = check_out_dir(config.out)
    finished = None
    if world.is_main:
        finished = _guard_earlier_run(out, resume=bool(config.resume), overwrite=args.overwrite)
        take_over_out_dir(out)
    if distributed.broadcast_object(finished is not None):
        if finished is not None:
            print(f"the evaluation in {out} is finished: its report is {finished} (and report.html beside it); "
                  "nothing was run again (--overwrite runs it again)")
        return 0
    command = "bastion " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    progress = world.is_main and not args.quiet  # a bar in a terminal, a line every ~30 s elsewhere
    result = evaluate(config, progress=progress, command=command)
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
    from bastion.evaluate.runner import STATE_NAME

    if resume and overwrite:
        raise InputError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    earlier = [name for name in ("report.json", STATE_NAME) if (out / name).exists()]
    if earlier and not resume and not overwrite:
        what = "the report" if earlier[0] == "report.json" else "the saved stages"
        raise InputError(f"--out {out} holds {what} of an earlier evaluation ({earlier[0]}): give --resume to "
                         "continue it, --overwrite to replace it, or another --out")
    if resume and earlier == ["report.json"]:
        report = out / "report.json"
        if not (out / "report.html").exists():  # killed between the two files: the page follows from the JSON
            import json

            from bastion.report import write_html

            try:
                write_html(json.loads(report.read_text(encoding="utf-8")), out / "report.html")
            except (OSError, ValueError) as error:
                raise InputError(f"--resume: {report} of the finished run cannot be read ({error}); give "
                                 "--overwrite to run it again") from None
        return report
    return None
