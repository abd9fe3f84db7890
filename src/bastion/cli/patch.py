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
from bastion.errors import InputError

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    """Add the `patch` subcommand."""
    parser = commands.add_parser(
        "patch",
        help="train an adversarial patch and export it as a PNG",
        description="Brown et al.'s adversarial patch (2017): trained by expectation over transformation "
        "(position, scale, rotation, brightness), exported as a printable PNG, and measured pasted at random "
        "places on held-out images. Writes patch.png, patch.pt and patch.json to --out.",
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train, export and measure the patch; print the summary."""
    import torch

    from bastion._io import save_torch_atomic, write_atomic
    from bastion.attacks.patch import AdversarialPatch, evaluate_patch
    from bastion.data import load_dataset
    from bastion.models import model_device_dtype

    require(args, "model", "data")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    if args.png_size < 1:
        raise InputError(f"--png-size must be a positive number of pixels, got {args.png_size}")
    model = load_model_from_args(args).module
    device, dtype = model_device_dtype(model)
    train = load_data_from_args(args)
    if args.eval_data:
        held_out = load_dataset(args.eval_data, root=args.data_root, limit=args.eval_limit)
    else:
        if len(train) < 2:
            raise InputError("--data needs at least 2 points to split into training and held-out halves")
        half = len(train) // 2
        train, held_out = train.subset(torch.arange(half)), train.subset(torch.arange(half, len(train)))
    if args.target is not None and not 0 <= args.target < train.num_classes:
        raise InputError(f"--target must be a class in [0, {train.num_classes}), got {args.target}")
    x_train, y_train = train.batch(slice(None), device=device, dtype=dtype)
    x_test, y_test = held_out.batch(slice(None), device=device, dtype=dtype)
    trainer = AdversarialPatch(size=args.size, shape=args.shape, steps=args.steps, batch_size=args.train_batch,
                               lr=args.lr)
    fit = trainer.fit(model, x_train, y_train, target=args.target, generator=torch.Generator().manual_seed(args.seed))
    result = evaluate_patch(model, fit.patch, x_test, y_test, placements=args.placements,
                            batch_size=args.batch_size or 256, generator=torch.Generator().manual_seed(args.seed + 1))
    out = Path(args.out)
    png = fit.patch.save_png(out / "patch.png", size=args.png_size)
    tensor_path = save_torch_atomic({"pixels": fit.patch.pixels.cpu(), "mask": fit.patch.mask.cpu(),
                                     "shape": fit.patch.shape, "target": fit.patch.target}, out / "patch.pt")
    summary = {
        "model": args.model, "train_data": train.name, "n_train": len(train), "eval_data": held_out.name,
        "n_eval": len(held_out), "settings": trainer.settings(), "target": args.target,
        "side_pixels": fit.patch.side, "area": float(fit.patch.mask.sum()) / (x_train.shape[-1] * x_train.shape[-2]),
        "success_rate": result.success_rate, "attacked": result.attacked, "placements": result.placements,
        "clean_accuracy": result.clean_accuracy, "patched_accuracy": result.patched_accuracy,
        "train_seconds": fit.seconds, "train_passes": vars(fit.passes), "png_size": args.png_size, "seed": args.seed,
    }
    json_path = write_atomic(out / "patch.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    kind = "untargeted" if args.target is None else f"targeted at class {args.target}"
    print(f"{kind} {args.shape} patch, {fit.patch.side}x{fit.patch.side} px ({summary['area']:.1%} of the image), "
          f"trained on {len(train)} images in {fit.seconds:.1f} s\n"
          f"held out: {len(held_out)} images x {result.placements} random placements; clean accuracy "
          f"{result.clean_accuracy:.1%}, with the patch {result.patched_accuracy:.1%}; success rate "
          f"{result.success_rate:.1%} over {result.attacked} eligible images", file=sys.stdout)
    print("\n".join(["", "wrote:", *(f"  {p}" for p in (png, tensor_path, json_path))]))
    return 0
