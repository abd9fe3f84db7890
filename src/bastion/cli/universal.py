"""`bastion universal`: learn one universal perturbation on a training set, score it on held-out images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bastion.cli.common import add_model_options, check_out_dir, load_model_from_args
from bastion.cli.resumable import add_resume_options, run_resumable
from bastion.errors import InputError

__all__ = ["register", "run"]

_HELD_OUT = {"mnist-sample:train": "mnist-sample:eval"}


def register(commands: Any) -> None:
    """Add the `universal` subcommand."""
    parser = commands.add_parser(
        "universal",
        help="learn a universal adversarial perturbation and measure its held-out fooling rate",
        description="One perturbation for every image (Moosavi-Dezfooli et al., CVPR 2017: --method uap; "
        "Shafahi et al., AAAI 2020: --method sgd), learned on --data, scored on --eval-data. Writes "
        "universal.pt, universal.png and universal.json to --out; --resume continues an interrupted run.",
    )
    add_model_options(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="mnist-sample:train", help="training images (default mnist-sample:train)")
    data.add_argument("--eval-data", help="held-out images (default: mnist-sample:eval for mnist-sample:train)")
    data.add_argument("--data-root", help="where torchvision datasets are stored (and downloaded)")
    data.add_argument("--limit", type=int, help="train on only this many images")
    data.add_argument("--eval-limit", type=int, help="score on only this many images")
    threat = parser.add_argument_group("threat model")
    threat.add_argument("--norm", default="linf", help="linf (default) or l2")
    threat.add_argument("--eps", default="0.2", help="radius of the perturbation's ball (default 0.2)")
    method = parser.add_argument_group("method")
    method.add_argument("--method", default="uap", help="uap (DeepFool steps, default) or sgd (clipped-loss ascent)")
    method.add_argument("--epochs", type=int, help="most passes over the training images (default 10)")
    method.add_argument("--target-fooling", type=float, help="stop at this training fooling rate (default 0.8)")
    method.add_argument("--rel-step", type=float, help="sgd step size as a fraction of eps (default 0.1)")
    method.add_argument("--batch-size", type=int, help="images per pass (default 128)")
    parser.add_argument("--out", default="runs/universal", help="output directory (default runs/universal)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffling (default 0)")
    add_resume_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Learn and score the perturbation as stages (--resume continues them); print the summary, write the files."""
    if args.model is None:
        raise InputError("--model is required")
    eval_spec = args.eval_data or _HELD_OUT.get(args.data)
    if eval_spec is None:
        raise InputError("--eval-data is required: the held-out images to measure the fooling rate on")
    if eval_spec == args.data:
        raise InputError("--eval-data must differ from --data: the fooling rate is measured on unseen images")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    from bastion.evaluate.commands import universal_suite
    from bastion.threat import ThreatModel

    threat = ThreatModel(args.norm, args.eps)
    stages = universal_suite(train_data=args.data, train_limit=args.limit, data_root=args.data_root,
                             method=args.method, epochs=args.epochs, target_fooling=args.target_fooling,
                             rel_step=args.rel_step, batch_size=args.batch_size)
    return run_resumable(args, "universal", "universal.json", lambda main: _run(args, stages, threat, eval_spec, main))


def _run(args: argparse.Namespace, stages: list[Any], threat: Any, eval_spec: str, main: bool) -> int:
    from bastion._io import write_atomic
    from bastion.data import load_dataset
    from bastion.evaluate.command_reports import learned_perturbation, universal_report
    from bastion.evaluate.commands import run_suite

    model = load_model_from_args(args).module
    held_out = load_dataset(eval_spec, root=args.data_root, limit=args.eval_limit)
    run = run_suite(stages, model, held_out, threat=threat, seed=args.seed, out=args.out, resume=args.resume)
    if not main:
        return 0
    tensor_path, image_path = learned_perturbation(run.ctx).save(Path(args.out))
    summary = universal_report(run.ctx, model=args.model)
    json_path = write_atomic(Path(args.out) / "universal.json", json.dumps(summary, indent=2))
    run.finish()
    print(json.dumps(summary, indent=2))
    print("\n".join(["", "wrote:", *(f"  {p}" for p in (tensor_path, image_path, json_path))]))
    return 0
