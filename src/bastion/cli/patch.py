"""`bastion patch`: train an adversarial patch, export it as a printable PNG, measure it on held-out images.

Training uses `--data`; the success rate is measured on `--eval-data`. Without `--eval-data` the
points of `--data` are split in two: the first half trains the patch, the second half measures it.
"""

from __future__ import annotations

import argparse
import json
import sys
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

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    """Add the `patch` subcommand."""
    parser = commands.add_parser(
        "patch",
        help="train an adversarial patch and export it as a PNG",
        description="Brown et al.'s adversarial patch (2017): trained by expectation over transformation "
        "(position, scale, rotation, brightness), exported as a printable PNG, and measured pasted at random "
        "places on held-out images. Writes patch.png, patch.pt and patch.json to --out; --resume continues an "
        "interrupted run.",
    )
    add_model_options(parser)
    add_data_options(parser)
    data = parser.add_argument_group("held-out data")
    data.add_argument("--eval-data", help="images the success rate is measured on (default: the second half of "
                      "--data, which then trains on its first half)")
    data.add_argument("--eval-limit", type=int, help="use only this many held-out images")
    patch = parser.add_argument_group("patch")
    patch.add_argument("--size", type=float, default=0.1, help="share of the image area covered (default 0.1)")
    patch.add_argument("--shape", choices=["square", "circle"], default="square", help="patch shape (square)")
    patch.add_argument("--target", type=int, help="targeted patch: the class it should make the model predict")
    patch.add_argument("--steps", type=int, default=500, help="optimization steps (default 500)")
    patch.add_argument("--train-batch", type=int, default=64, help="training images per step (default 64)")
    patch.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    patch.add_argument("--placements", type=int, default=4, help="random placements per held-out image (4)")
    patch.add_argument("--png-size", type=int, default=300, help="side of the exported PNG in pixels (300)")
    parser.add_argument("--out", default="runs/patch", help="output directory (default runs/patch)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patch's randomness (default 0)")
    add_resume_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train and measure the patch as stages (--resume continues them); export it and print the summary."""
    require(args, "model", "data")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    if args.png_size < 1:
        raise InputError(f"--png-size must be a positive number of pixels, got {args.png_size}")
    from bastion.evaluate.commands import patch_suite

    split = not args.eval_data  # without held-out data, --data's first half trains and its second half measures
    train = {"train_data": args.data, "train_limit": args.limit, "train_subset_seed": args.subset_seed,
             "data_root": args.data_root} if not split else {}
    stages = patch_suite(split=split, placements=args.placements, size=args.size, shape=args.shape,
                         target=args.target, steps=args.steps, train_batch=args.train_batch, lr=args.lr, **train)
    return run_resumable(args, "patch", "patch.json", lambda main: _run(args, stages, split, main))


def _run(args: argparse.Namespace, stages: list[Any], split: bool, main: bool) -> int:
    from bastion._io import save_torch_atomic, write_atomic
    from bastion.data import load_dataset
    from bastion.evaluate.command_reports import patch_report, trained_patch
    from bastion.evaluate.commands import run_suite

    model = load_model_from_args(args).module
    data = (load_data_from_args(args) if split
            else load_dataset(args.eval_data, root=args.data_root, limit=args.eval_limit))
    if args.target is not None and not 0 <= args.target < data.num_classes:
        raise InputError(f"--target must be a class in [0, {data.num_classes}), got {args.target}")
    run = run_suite(stages, model, data, seed=args.seed, batch_size=args.batch_size or 256, out=args.out,
                    resume=args.resume)
    if not main:
        return 0
    out = Path(args.out)
    patch = trained_patch(run.ctx)
    png = patch.save_png(out / "patch.png", size=args.png_size)
    tensor_path = save_torch_atomic({"pixels": patch.pixels.cpu(), "mask": patch.mask.cpu(), "shape": patch.shape,
                                     "target": patch.target}, out / "patch.pt")
    summary = patch_report(run.ctx, model=args.model, png_size=args.png_size)
    json_path = write_atomic(out / "patch.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    run.finish()
    kind = "untargeted" if args.target is None else f"targeted at class {args.target}"
    print(f"{kind} {args.shape} patch, {patch.side}x{patch.side} px ({summary['area']:.1%} of the image), "
          f"trained on {summary['n_train']} images in {summary['train_seconds']:.1f} s\n"
          f"held out: {summary['n_eval']} images x {summary['placements']} random placements; clean accuracy "
          f"{summary['clean_accuracy']:.1%}, with the patch {summary['patched_accuracy']:.1%}; success rate "
          f"{summary['success_rate']:.1%} over {summary['attacked']} eligible images", file=sys.stdout)
    print("\n".join(["", "wrote:", *(f"  {p}" for p in (png, tensor_path, json_path))]))
    return 0
