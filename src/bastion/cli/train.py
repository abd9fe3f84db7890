"""`bastion train`: train a model with a registered method; checkpoints, model card and curves in --out."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.cli.common import (
    add_data_options,
    add_model_options,
    add_threat_options,
    check_out_dir,
    load_data_from_args,
    take_over_out_dir,
)
from bastion.cli.history_options import add_history_options, prepare_history
from bastion.errors import InputError

if TYPE_CHECKING:
    from bastion.data import ImageSet
    from bastion.distributed import World

__all__ = ["register"]

logger = logging.getLogger(__name__)

_METHOD_OPTIONS = ("steps", "rel_step", "beta", "mix", "sigma", "temperature", "replays", "random_start")


def register(commands: Any) -> None:
    """Add the `train` subcommand."""
    parser = commands.add_parser(
        "train", help="train a model (standard, adversarial, noise, distillation)",
        description="Train --model on --data with --method; writes OUT/checkpoint.pt each epoch, then OUT/model.pt, "
        "OUT/model_card.json and OUT/training.html. `bastion evaluate --model OUT` evaluates the result.")
    parser.add_argument("--method", required=True, help="standard, pgd-at, mixed, fgsm-rs, trades, mart, free, "
                        "gaussian, distill")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true", help="start afresh in an OUT that already holds a "
                        "model.pt or checkpoint.pt, replacing them")
    add_model_options(parser)
    add_data_options(parser)
    parser.set_defaults(data="mnist-sample:train")
    parser.add_argument("--val-data", help="held-out data for the per-epoch check and the model card "
                        "(default: mnist-sample:eval for mnist-sample data, else the last --val-size of --data)")
    parser.add_argument("--val-size", type=float, default=0.1, help="held-out share of --data without --val-data")
    parser.add_argument("--val-limit", type=int, help="held-out images for the model card's accuracy (default all)")
    add_threat_options(parser, eps_default=None)
    method = parser.add_argument_group("method options (each method takes some of them)")
    method.add_argument("--steps", type=int, help="attack steps of the inner maximization (default 10)")
    method.add_argument("--rel-step", type=float, help="attack step size as a fraction of eps")
    method.add_argument("--random-start", action=argparse.BooleanOptionalAction, default=None, help="fgsm-rs")
    method.add_argument("--beta", type=float, help="trades, mart: weight of the robustness term (default 6)")
    method.add_argument("--mix", type=float, help="mixed: weight of the adversarial loss (default 0.5)")
    method.add_argument("--sigma", type=float, help="gaussian: noise standard deviation (default 0.25)")
    method.add_argument("--temperature", type=float, help="distill, standard: softmax temperature")
    method.add_argument("--teacher", help="distill: the teacher model spec (e.g. a bastion train OUT directory)")
    method.add_argument("--replays", type=int, help="free: minibatch replays (default 8)")
    loop = parser.add_argument_group("optimization")
    loop.add_argument("--epochs", type=int, default=10)
    loop.add_argument("--optimizer", default="adam", help="adam (default) or sgd (momentum 0.9)")
    loop.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    loop.add_argument("--momentum", type=float, default=0.9)
    loop.add_argument("--weight-decay", type=float, default=0.0)
    loop.add_argument("--schedule", help="piecewise, cyclic, cosine or constant (default: the method's paper)")
    loop.add_argument("--ramp-epochs", type=float, default=0.0, help="grow eps linearly from 0 over these epochs")
    loop.add_argument("--augment", default="auto", help="auto, none, crop, crop-flip (auto: shifts for grayscale)")
    loop.add_argument("--seed", type=int, default=0)
    loop.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 (default: on CUDA)")
    guard = parser.add_argument_group("held-out checks")
    guard.add_argument("--check-size", type=int, default=500, help="held-out images checked each epoch (0: none)")
    guard.add_argument("--check-steps", type=int, default=10, help="PGD steps of the per-epoch check")
    guard.add_argument("--keep-best", action=argparse.BooleanOptionalAction, default=None,
                       help="keep the best held-out robust epoch (default: on for fgsm-rs)")
    guard.add_argument("--eval-steps", type=int, default=20, help="PGD steps of the model card's accuracy")
    guard.add_argument("--eval-restarts", type=int, default=1, help="PGD restarts of the model card's accuracy")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_history_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train, save the weights, the model card and the curves; print the held-out result.

    Under torchrun every process trains its shard (DistributedDataParallel); rank 0 alone writes.
    """
    from bastion import distributed

    with distributed.session(args.device) as world:
        return _train(args, world)


def _train(args: argparse.Namespace, world: World) -> int:
    import torch

    from bastion import distributed
    from bastion.epsrange import check_eps
    from bastion.evaluate.config import parse_floats
    from bastion.models import Normalized, load_model
    from bastion.models.tensorfile import save_safetensors
    from bastion.threat import ThreatModel
    from bastion.train import TRAINERS, FitConfig, fit, heldout_accuracy
    from bastion.train.card import write_card, write_training_html
    from bastion.train.checkpoint import CARD_NAME, CHECKPOINT_NAME, SAFETENSORS_NAME, WEIGHTS_NAME, save_atomic
    from bastion.train.model_card import HeldOutCheck, model_card

    if args.model is None:
        raise InputError("--model is required: the architecture to train, e.g. bastion.models.nets:MnistCNN")
    trainer_class = TRAINERS.get(args.method)
    history = prepare_history(args, out=args.out)
    out = check_out_dir(args.out)
    # torchrun --max-restarts starts the command again after a failure: continue from rank 0's checkpoint
    restarted = distributed.broadcast_object(distributed.restart_count() > 0 and world.is_main
                                             and (out / CHECKPOINT_NAME).is_file())
    resume, overwrite = args.resume or restarted, args.overwrite and not restarted
    _refuse_to_replace(out, resume=resume, overwrite=overwrite)
    if world.is_main:
        take_over_out_dir(out)
    train, val = _data(args)
    threat = ThreatModel(args.norm or "linf", args.eps) if args.eps is not None else None
    if threat is not None:
        check_eps(threat.norm.name, threat.eps, shape=train.shape, bounds=threat.bounds)
    if getattr(trainer_class, "adversarial", False) and threat is None:
        raise InputError(f"--method {args.method} needs --eps (MNIST: 0.3, CIFAR-10: 8/255)")
    mean = parse_floats(args.mean, "mean") if args.mean else None
    std = parse_floats(args.std, "std") if args.std else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)  # the initial weights, reproducibly, without touching the caller's RNG
        loaded = load_model(args.model, weights=args.weights, mean=mean, std=std, device=world.device)
    if loaded.gradient_free:
        raise InputError(f"{args.model} runs without gradients (onnxruntime) and cannot be trained; train the "
                         "PyTorch model it was exported from")
    model = loaded.module
    _check_outputs(model, train, val)
    options = {k: getattr(args, k) for k in _METHOD_OPTIONS}
    if args.teacher is not None:
        options["teacher"] = load_model(args.teacher, device=loaded.device).module
    trainer = TRAINERS.create(args.method, **options)
    config = FitConfig(epochs=args.epochs, batch_size=args.batch_size or 128, optimizer=args.optimizer, lr=args.lr,
                       momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
                       ramp_epochs=args.ramp_epochs, augment=args.augment, seed=args.seed, check_size=args.check_size,
                       check_steps=args.check_steps, keep_best=args.keep_best, amp=args.amp)
    if overwrite and world.is_main:  # never mix runs: a new run killed before its first checkpoint must not resume
        for name in (CHECKPOINT_NAME, WEIGHTS_NAME, SAFETENSORS_NAME, CARD_NAME, "training.html"):  # the old one
            (out / name).unlink(missing_ok=True)
    if world.is_main:
        print(_batch_line(args.method, config, world.size, resume), flush=True)
    result = fit(model, trainer, train, threat=threat, config=config, val=val, out=out, resume=resume,
                 progress=not args.quiet)
    if not world.is_main:
        return 0  # rank 0 writes the weights, the model card and the run record
    model.load_state_dict(result.state_dict)
    raw = model.model if isinstance(model, Normalized) else model
    weights = {k: v.detach().cpu() for k, v in raw.state_dict().items()}
    save_atomic(weights, out / WEIGHTS_NAME)
    save_safetensors(weights, out / SAFETENSORS_NAME)
    start = time.perf_counter()
    held_out = val.select(min(args.val_limit, len(val))) if args.val_limit else val
    clean, robust = heldout_accuracy(model, held_out, threat, steps=args.eval_steps, restarts=args.eval_restarts,
                                     seed=args.seed)
    check = HeldOutCheck(clean, robust, args.eval_steps, args.eval_restarts, time.perf_counter() - start)
    card = model_card(method=args.method, trainer=trainer.settings(),
                      adversarial=bool(getattr(trainer_class, "adversarial", False)), config=config, threat=threat,
                      model=model, spec=args.model, initial_weights=args.weights, train=train, val=val,
                      held_out=held_out, check=check, result=result,
                      command="bastion " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    for warning in card["warnings"][len(result.warnings):]:
        logger.warning(warning)
    write_card(out / CARD_NAME, card)
    write_training_html(out / "training.html", card)
    robust_text = "" if robust is None or threat is None else (
        f", PGD-{args.eval_steps} accuracy {robust:.4f} at {threat.describe()}")
    print(f"{args.method}: held-out clean accuracy {clean:.4f}{robust_text} on {len(held_out)} images "
          f"(epoch {result.selected_epoch}, {result.seconds:.0f} s)\nwrote {out / WEIGHTS_NAME}, "
          f"{out / SAFETENSORS_NAME}, {out / CARD_NAME}, {out / 'training.html'}")
    return history.record("train", card, out=out, report=out / "training.html", artifacts=[out / CARD_NAME])


def _check_outputs(model: Any, train: ImageSet, val: ImageSet) -> None:
    """One forward pass before training: the model must take the data and output a logit for every label.

    The same check as `bastion evaluate` makes (`checked_logits`), so a label the model cannot
    output is one line here, not an IndexError from the loss after the first batch.
    """
    import torch

    from bastion.models import attack_mode, model_device_dtype
    from bastion.models.checks import checked_logits

    device, dtype = model_device_dtype(model)
    x, _ = train.batch(torch.arange(min(len(train), 2)), device=device, dtype=dtype)
    with attack_mode(model), torch.no_grad():
        checked_logits(model, x, max(train.num_classes, val.num_classes))


def _refuse_to_replace(out: Path, *, resume: bool, overwrite: bool) -> None:
    """An earlier run's weights or checkpoint in `out` are replaced only when asked (--overwrite), or continued."""
    from bastion.train.checkpoint import CHECKPOINT_NAME, WEIGHTS_NAME

    if resume and overwrite:
        raise InputError("--resume continues the run in --out and --overwrite starts it afresh: give one of them")
    found = [name for name in (WEIGHTS_NAME, CHECKPOINT_NAME) if (out / name).exists()]
    if found and not resume and not overwrite:
        raise InputError(f"--out {out} already holds {' and '.join(found)} of an earlier run: give --resume to "
                         "continue it, --overwrite to replace it, or another --out")


def _batch_line(method: str, config: Any, processes: int, resume: bool) -> str:
    """The effective batch size and learning rate: what a change of --nproc-per-node changes."""
    shared = f" ({config.batch_size} per process x {processes} processes)" if processes > 1 else ""
    return (f"{method}: {'resuming' if resume else 'training'} with effective batch size "
            f"{config.batch_size * processes}{shared}, learning rate {config.lr:g} ({config.optimizer})")


def _data(args: argparse.Namespace) -> tuple[Any, Any]:
    """Training set and held-out set (never trained on)."""
    import torch

    from bastion.data import load_dataset

    train = load_data_from_args(args)
    if args.val_data:
        return train, load_dataset(args.val_data, root=args.data_root)
    if train.name.startswith("mnist-sample:") and train.name != "mnist-sample:all":
        if train.name == "mnist-sample:eval":
            raise InputError("training on mnist-sample:eval leaves no held-out data; train on mnist-sample:train")
        return train, load_dataset("mnist-sample:eval")
    if not 0 < args.val_size < 1:
        raise InputError(f"--val-size must lie in (0, 1), got {args.val_size}")
    cut = len(train) - max(1, int(round(args.val_size * len(train))))
    if cut < 1:
        raise InputError(f"{train.name} has too few images ({len(train)}) to hold some out")
    return train.subset(torch.arange(cut)), train.subset(torch.arange(cut, len(train)))
