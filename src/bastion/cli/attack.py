"""`bastion attack NAME`: run one registered attack on a model and data, save the adversarial examples.

The attack's own options are read off its constructor, so every registered attack gets its flags
(and `bastion attack NAME --help`) without code here.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.cli.common import (
    add_data_options,
    add_model_options,
    add_run_options,
    add_threat_options,
    check_out_file,
    load_data_from_args,
    load_model_from_args,
    require,
)
from bastion.errors import InputError

if TYPE_CHECKING:  # numpy and torch load in the functions that use them: `bastion --help` stays light
    import numpy as np
    import torch

__all__ = ["register", "run_attack_command"]


def register(commands: Any) -> None:
    """List `attack` in `bastion --help`; `run_attack_command` parses it, since its flags depend on NAME."""
    commands.add_parser("attack", help="run one attack (bastion attack NAME --help for its options)", add_help=False)


def _attack_options(parser: argparse.ArgumentParser, factory: Any) -> list[str]:
    """Add one flag per constructor argument, typed from its annotation and default."""
    group = parser.add_argument_group("attack options")
    hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    names = []
    for name, param in inspect.signature(factory).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        flag, default, dest = "--" + name.replace("_", "-"), param.default, f"opt_{name}"
        kind = _base_type(hints.get(name, type(default)))
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, help=f"(default {default})")
        else:
            group.add_argument(flag, dest=dest, type=kind, help=f"(default {default})")
        names.append(name)
    return names


def _base_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else (hint if hint in (bool, int, float, str) else str)


def run_attack_command(argv: list[str]) -> int:
    """Parse `bastion attack NAME ...` and run it."""
    from bastion.attacks import ATTACKS

    if not argv or argv[0].startswith("-"):
        names = ", ".join(ATTACKS.names())
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: bastion attack NAME [options]\n\nattacks: {names}\n\nbastion attack NAME --help for options")
            return 0
        raise InputError(f"name an attack: bastion attack NAME ...; attacks: {names}")
    name, factory = argv[0], ATTACKS.get(argv[0])
    parser = argparse.ArgumentParser(prog=f"bastion attack {name}", description=(factory.__doc__ or "").strip())
    add_model_options(parser)
    add_data_options(parser)
    add_threat_options(parser)
    parser.add_argument("--target", help="targeted attack: random, least-likely, or a class index")
    parser.add_argument("--out", help="write the adversarial examples (x) with their labels (y) and per-point "
                        "results to this .npz file (readable as --data npz:FILE)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--defense", action="append", help="a defense before (or after) the model, repeatable, "
                        "in order: name:key=value,... e.g. jpeg:quality=75")
    parser.add_argument("--adaptive", action="store_true", help="attack the defenses as they declare: BPDA through "
                        "non-differentiable ones, EOT over random ones")
    add_run_options(parser)
    option_names = _attack_options(parser, factory)
    args = parser.parse_args(argv[1:])
    require(args, "model", "data")
    _check_threat(args, name, factory)
    for option, why in getattr(factory, "cli_required", {}).items():
        if getattr(args, f"opt_{option}") is None:
            raise InputError(f"bastion attack {name} needs --{option.replace('_', '-')}: {why}")
    out = _check_out(args.out, overwrite=args.overwrite) if args.out else None  # before the work, not after
    attack = ATTACKS.create(name, **{k: getattr(args, f"opt_{k}") for k in option_names})
    summary, arrays = _run(args, attack)
    print(json.dumps(summary, indent=2), flush=True)  # stdout holds the JSON only: `| jq .` works
    if out is not None:
        print(f"wrote {_save_npz(out, summary, arrays)}", file=sys.stderr)
    return 0


def _check_threat(args: argparse.Namespace, name: str, factory: Any) -> None:
    """Refuse `--eps max` for an attack with a radius, and a radius of 0 or one beyond the input range."""
    from bastion.attacks import ATTACKS
    from bastion.epsrange import check_eps
    from bastion.threat import get_norm, parse_eps

    if args.eps in ("max", "inf"):
        if not getattr(factory, "minimizes_norm", False):
            minimal = ", ".join(n for n in ATTACKS.names() if getattr(ATTACKS.get(n), "minimizes_norm", False))
            raise InputError(f"--eps {args.eps} (an unbounded search) is for the minimal-norm attacks ({minimal}); "
                             f"give {name} a radius, e.g. --eps 0.3 or --eps 8/255")
        return
    check_eps(get_norm(args.norm or "linf").name, parse_eps(args.eps if args.eps is not None else "0.3"))


def _check_out(path: str, *, overwrite: bool) -> Path:
    """The --out file: an .npz name (what is written), checked before the work."""
    if Path(path).suffix.lower() != ".npz" and not Path(path).is_dir():  # a folder: check_out_file says so
        raise InputError(f"--out {path}: bastion attack writes a numpy .npz archive; name a file ending in .npz, "
                         f"e.g. {Path(path).with_suffix('.npz')}")
    return check_out_file(path, overwrite=overwrite)


def _run(args: argparse.Namespace, attack: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Attack the data in batches; returns the summary and per-point arrays.

    Untargeted, only correctly classified points are attacked (as in `bastion evaluate`): a clean
    error counts as broken at no cost and keeps x_adv = x.
    """
    import numpy as np
    import torch

    from bastion.epsrange import check_eps
    from bastion.evaluate.stages.min_norm import norm_profile
    from bastion.models import model_device_dtype
    from bastion.progress import progress_bar, stage_finished, stage_started
    from bastion.threat import ThreatModel

    data = load_data_from_args(args)
    if args.eps in ("max", "inf"):
        threat = ThreatModel.unbounded(args.norm or "linf", data.shape)
    else:
        threat = ThreatModel(args.norm or "linf", args.eps if args.eps is not None else 0.3)
        check_eps(threat.norm.name, threat.eps, shape=data.shape, bounds=threat.bounds)  # L2 needs the input size
    model = _defended(load_model_from_args(args).module, args.defense or [], args.adaptive, data)
    device, dtype = model_device_dtype(model)
    generator = torch.Generator().manual_seed(args.seed or 0)
    batch_size = args.batch_size or 256
    columns: dict[str, list[np.ndarray]] = {}
    batches = data.batches(batch_size, device=device, dtype=dtype)
    started = stage_started(attack.name, enabled=not args.quiet)
    progress = progress_bar(len(data), desc=attack.name, unit="pt", enabled=not args.quiet)  # points: a useful ETA
    for _, x, y in batches:
        row = _attack_batch(attack, model, x, y, threat, args.target, generator, data.num_classes)
        progress.update(len(y))
        for key, value in row.items():
            columns.setdefault(key, []).append(value.detach().cpu().numpy())
    progress.close()
    stage_finished(attack.name, started, enabled=not args.quiet)
    arrays = {k: np.concatenate(v) for k, v in columns.items()}
    labels = data.labels.numpy()
    summary = {
        "attack": attack.name,
        "settings": attack.settings(),
        "threat": threat.describe(),
        "targeted": args.target,
        "defense": list(args.defense or []),
        "adaptive": bool(args.adaptive),
        "n": len(data),
        "clean_accuracy": float((arrays["clean_prediction"] == labels).mean()),
        "robust_accuracy": float((arrays["prediction"] == labels).mean()),
        "success_rate": float(arrays["success"].mean()),
        "median_norm": float(np.median(arrays["norm"])),
        "passes": {k.removeprefix("passes_"): int(v.sum()) for k, v in arrays.items() if k.startswith("passes_")},
    }
    if attack.minimizes_norm and args.target is None:
        correct = torch.from_numpy(arrays["clean_prediction"] == labels)
        fooled = torch.from_numpy(arrays["success"]) & correct
        top = _grid_top(arrays["norm"][fooled.numpy()], threat.eps) if args.eps in ("max", "inf") else threat.eps
        grid = [round(float(v), 12) for v in np.linspace(0.0, top, 11)]
        summary["norm_profile"] = norm_profile(torch.from_numpy(arrays["norm"]), fooled, correct, grid)
    # x and y are the keys `--data npz:FILE` reads: the adversarial examples are data for the next command.
    kept = {("x" if k == "x_adv" else k): v for k, v in arrays.items() if not k.startswith("passes_")}
    return summary, {"y": labels, **kept}


def _grid_top(found: np.ndarray, bound: float) -> float:
    """The curve's largest radius for an unbounded search: the largest norm found, rounded up to 2 digits.

    The box bound (28 for L2 on MNIST) would put nearly all of the curve at zero accuracy.
    """
    import numpy as np

    found = found[np.isfinite(found) & (found > 0)]
    if not len(found):
        return bound
    top = float(found.max())
    scale = 10.0 ** (math.floor(math.log10(top)) - 1)
    return min(bound, math.ceil(top / scale - 1e-9) * scale)


def _defended(model: Any, specs: list[str], adaptive: bool, data: Any) -> Any:
    """The model behind --defense specs; with --adaptive, its adaptive view (same predictions, adaptive gradients).

    The view is BPDA through the declared defenses, EOT over the random ones, and straight-through
    gradients for the non-differentiable operations a probe pass on the first points of `data` finds.
    """
    import torch

    from bastion.defenses import adaptive_model, apply_defenses
    from bastion.models import model_device_dtype

    model = apply_defenses(model, specs)
    if not adaptive:
        return model
    device, dtype = model_device_dtype(model)
    probe, _ = data.batch(torch.arange(min(len(data), 8)), device=device, dtype=dtype)
    return adaptive_model(model, probe=probe).module


def _attack_batch(
    attack: Any,
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: Any,
    target_spec: str | None,
    generator: torch.Generator,
    num_classes: int,
) -> dict[str, torch.Tensor]:
    import torch

    from bastion.attacks.targets import select_targets
    from bastion.models import attack_mode
    from bastion.models.checks import checked_logits

    with attack_mode(model), torch.no_grad():
        clean = checked_logits(model, x, num_classes).argmax(1)
    target = select_targets(target_spec, model, x, y, generator)
    rows = (clean == y) if target is None else torch.ones_like(y, dtype=torch.bool)
    result = attack(model, x[rows], y[rows], threat, target=None if target is None else target[rows],
                    generator=generator)
    x_adv, prediction = x.clone(), clean.clone()
    x_adv[rows], prediction[rows] = result.x_adv, result.predictions
    success, norm = ~rows, torch.zeros(len(x), device=x.device)
    success[rows], norm[rows] = result.success, result.norms.to(norm.dtype)
    passes = {f"passes_{k}": torch.tensor([v]) for k, v in vars(result.passes).items()}
    return {"x_adv": x_adv.float(), "clean_prediction": clean, "prediction": prediction, "success": success,
            "norm": norm, **passes}


def _save_npz(path: Path, summary: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write the arrays and the summary as one compressed .npz, atomically."""
    import numpy as np

    from bastion._io import write_atomic_with

    contents: dict[str, Any] = {"summary": np.array(json.dumps(summary)), **arrays}
    return write_atomic_with(path, lambda handle: np.savez_compressed(handle, **contents))
