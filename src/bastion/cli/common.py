"""Command-line options shared by the subcommands."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bastion.errors import InputError

__all__ = ["MODEL_FORMS", "add_data_options", "add_model_options", "add_run_options", "add_threat_options",
           "check_out_dir", "check_out_file", "load_data_from_args", "load_model_from_args", "require",
           "take_over_out_dir"]


#: The model specs every command's --model takes (`bastion.models.load_model`), said once for every --help.
MODEL_FORMS = ("zoo:NAME, hf:NAME_OR_PATH[@REVISION], module:factory, path/file.py:factory, a .pt2 (torch.export), "
               ".onnx or TorchScript file, or a bastion train output folder")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --mean, --std, --device."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", help=MODEL_FORMS + " (bastion list models)")
    group.add_argument("--weights", help="state dict for a factory-built model: .safetensors, or a torch checkpoint "
                       "(loaded with weights_only=True)")
    group.add_argument("--mean", help="per-channel normalization mean, e.g. 0.49,0.48,0.45")
    group.add_argument("--std", help="per-channel normalization std, e.g. 0.25,0.24,0.26")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--data, --data-root, --limit, --subset-seed, --batch-size."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data", help="mnist-sample[:eval|train|all], npz:PATH, pt:PATH, imagefolder:PATH, cifar10:test, "
        "hf:NAME_OR_PATH[:SPLIT], ... (bastion list datasets)"
    )
    group.add_argument("--data-root", help="where torchvision datasets are stored (and downloaded)")
    group.add_argument("--limit", type=int, help="use only this many points")
    group.add_argument("--subset-seed", type=int, help="take a seeded random subset of --limit points")
    group.add_argument("--batch-size", type=int, help="points per forward pass (default 256)")


def add_threat_options(parser: argparse.ArgumentParser, *, eps_default: str | None = "0.3") -> None:
    """--norm, --eps (its help names the default the command applies, if any)."""
    group = parser.add_argument_group("threat model")
    group.add_argument("--norm", help="linf (default) or l2")
    default = f"default {eps_default}, the MNIST convention" if eps_default else "no default"
    group.add_argument("--eps", help=f"radius of the threat model: a number or a fraction such as 8/255 ({default}"
                       "; bastion attack: 'max' for an unbounded minimal-norm search)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--seed, --quiet."""
    parser.add_argument("--seed", type=int, help="seed of the attacks' randomness (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def require(args: argparse.Namespace, *names: str) -> None:
    """Refuse a missing required option with a one-line error naming its flag."""
    for name in names:
        if getattr(args, name) is None:
            raise InputError(f"--{name.replace('_', '-')} is required")


def load_model_from_args(args: argparse.Namespace) -> Any:
    """The `LoadedModel` that the model options (`add_model_options`) name, normalization inside it."""
    from bastion.evaluate.config import parse_floats
    from bastion.models import load_model

    mean = parse_floats(args.mean, "mean") if args.mean else None
    std = parse_floats(args.std, "std") if args.std else None
    return load_model(args.model, weights=args.weights, mean=mean, std=std, device=args.device)


def load_data_from_args(args: argparse.Namespace) -> Any:
    """The `ImageSet` that the data options (`add_data_options`) name."""
    from bastion.data import load_dataset

    return load_dataset(args.data, root=args.data_root, limit=args.limit, seed=args.subset_seed)


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create the output folder now and make sure it can be written: one line before the work, not a traceback after.

    Args:
        path: The folder a command will write into (created with its parents if missing).
        flag: The option that named it, for the message.

    Raises:
        InputError: If it is a file, lies under a file, or cannot be created or written.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{flag} {out} is a file, not a directory: name a folder (it is created if missing)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} {out} lies under {parent}, which is a file, not a directory")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise InputError(f"{flag} {out} cannot be written: {error.strerror or error}") from None
    return out


def take_over_out_dir(out: Path) -> None:
    """Remove what a killed earlier run left half-written in `out` (its atomic writes' temporary files)."""
    import logging

    from bastion._io import remove_temporaries

    for path in remove_temporaries(out):
        logging.getLogger(__name__).info("removed %s, left by an interrupted run", path)


def check_out_file(path: str | Path, *, overwrite: bool, flag: str = "--out") -> Path:
    """Make sure an output file can be written before the work starts, and never replace one unasked.

    Raises:
        InputError: If it is a directory, exists (without `overwrite`), or its folder cannot be written.
    """
    file = Path(path)
    if file.is_dir():
        raise InputError(f"{flag} {file} is a directory: name a file, e.g. {file / 'adversarial.npz'}")
    if file.exists() and not overwrite:
        raise InputError(f"{flag} {file} exists: give --overwrite to replace it, or another file name")
    if file.name in ("", ".", ".."):
        raise InputError(f"{flag} {path} does not name a file")
    check_out_dir(file.parent, flag=f"{flag} {file}: folder")
    return file
