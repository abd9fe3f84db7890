"""`bastion universal`: learn one universal perturbation on a training set, score it on held-out images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bastion.cli.common import add_model_options, check_out_dir, load_model_from_args
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
        "universal.pt, universal.png and universal.json to --out.",
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Fit, score, print the summary, write the files."""
    import torch

    from bastion._io import write_atomic
    from bastion.attacks.universal import UniversalPerturbation, evaluate_universal
    from bastion.data import load_dataset
    from bastion.models import model_device_dtype
    from bastion.threat import ThreatModel

    if args.model is None:
        raise InputError("--model is required")
    eval_spec = args.eval_data or _HELD_OUT.get(args.data)
    if eval_spec is None:
        raise InputError("--eval-data is required: the held-out images to measure the fooling rate on")
    if eval_spec == args.data:
        raise InputError("--eval-data must differ from --data: the fooling rate is measured on unseen images")
    check_out_dir(args.out)  # before the work: a bad --out fails now, not after it
    threat = ThreatModel(args.norm, args.eps)
    model = load_model_from_args(args).module
    device, dtype = model_device_dtype(model)
    train = load_dataset(args.data, root=args.data_root, limit=args.limit)
    held_out = load_dataset(eval_spec, root=args.data_root, limit=args.eval_limit)
    if train.fingerprint == held_out.fingerprint:
        raise InputError("--data and --eval-data hold the same images")
    x, y = train.batch(slice(0, len(train)), device=device, dtype=dtype)
    options = {"method": args.method, "epochs": args.epochs, "target_fooling": args.target_fooling,
               "rel_step": args.rel_step, "batch_size": args.batch_size}
    learner = UniversalPerturbation(**{k: v for k, v in options.items() if v is not None})
    result = learner.fit(model, x, y, threat, generator=torch.Generator().manual_seed(args.seed))
    x_eval, y_eval = held_out.batch(slice(0, len(held_out)), device=device, dtype=dtype)
    score = evaluate_universal(model, result.delta, x_eval, y_eval, bounds=threat.bounds)
    out = Path(args.out)
    tensor_path, image_path = result.save(out)
    summary = {
        "kind": "universal", "method": result.method, "threat": threat.describe(), "settings": repr(learner),
        "model": args.model, "train_data": train.name, "n_train": result.n_train, "eval_data": held_out.name,
        "train_fooling_rate": result.train_fooling_rate, "history": list(result.history),
        "held_out": vars(score), "norm_of_delta": float(threat.norm.measure(result.delta.unsqueeze(0))[0]),
        "passes": vars(result.passes), "seconds": result.seconds, "seed": args.seed,
    }
    json_path = write_atomic(out / "universal.json", json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print("\n".join(["", "wrote:", *(f"  {p}" for p in (tensor_path, image_path, json_path))]))
    return 0
