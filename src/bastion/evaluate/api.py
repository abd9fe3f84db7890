"""The Python API in one call: `bastion.evaluate(model, data, eps=...)` returns the typed report.

`bastion.evaluate` is this package, made callable (its submodules stay importable as usual);
`evaluate_robustness` is the same function by name, for code that type-checks the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from bastion.data import ImageSet, load_dataset
from bastion.errors import InputError
from bastion.evaluate.config import EvalConfig
from bastion.evaluate.pipeline import _factory_spec, evaluate_model
from bastion.evaluate.result import EvalResult
from bastion.models import load_model
from bastion.threat import parse_eps

__all__ = ["evaluate_robustness"]


def evaluate_robustness(
    model: nn.Module | str,
    data: ImageSet | str | tuple[Tensor, Tensor],
    *,
    eps: float | str = 0.3,
    norm: str = "linf",
    suite: str = "fast",
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    **settings: Any,
) -> EvalResult:
    """Evaluate a model's robustness with the full protocol and return the report (the content of report.json).

    Args:
        model: A module mapping images in [0, 1], (N, C, H, W), to logits, or a model spec
            ("zoo:mnist-cnn-at", "module:factory", a TorchScript file, a training output folder).
        data: An `ImageSet`, a data spec ("mnist-sample:eval", "npz:PATH", ...), or a pair of tensors
            (images in [0, 1] of shape (N, C, H, W), integer labels of shape (N,)).
        eps: The threat model's radius (a number or "8/255").
        norm: "linf" or "l2".
        suite: "fast" (the default: `apgd-fast`, escalated and audited with AutoAttack by itself),
            "autoattack" (the standard protocol, for numbers comparable with published AutoAttack
            results), "pgd" (quick, not enough for a claim) or "extended".
        seed: Seed of every stage's random stream.
        out: Folder where progress is saved after each stage; None keeps nothing.
        resume: Restore the stages a matching earlier run saved in `out` instead of running them again.
        progress: Show progress bars.
        **settings: Any other run-level `EvalConfig` option (`limit`, `defense`, `stages`, ...) or stage
            flag (`steps`, `certify`, `curve_points`, ...; `bastion.evaluate.flags`).

    Example:
        >>> import bastion
        >>> report = bastion.evaluate("zoo:mnist-cnn-at", "mnist-sample:eval", eps=0.3, limit=100)
        >>> report.summary.robust_accuracy, report.verdict.verdict
    """
    spec = model if isinstance(model, str) else ""
    loaded = load_model(model, device=settings.get("device", "auto")).module if isinstance(model, str) else model
    name = data if isinstance(data, str) else ""
    if isinstance(data, str):
        points = load_dataset(data, limit=settings.get("limit"), seed=settings.get("subset_seed"),
                              root=settings.get("data_root"))
    elif isinstance(data, tuple) and len(data) == 2:
        x, y = data
        points = ImageSet(images=x, labels=y, classes=[str(c) for c in range(int(y.max()) + 1 if len(y) else 1)],
                          name="tensors")
    elif isinstance(data, ImageSet):
        points = data
    else:
        raise InputError("data must be an ImageSet, a data spec string, or an (images, labels) pair of tensors")
    config = EvalConfig.build(model=spec, data=name, eps=parse_eps(eps), norm=norm, suite=suite, seed=seed,
                        out=str(out) if out is not None else "runs", **settings)
    unweighted = [spec] if spec and _factory_spec(spec) else []  # the API loads no --weights: a factory's own
    return evaluate_model(loaded, points, config, resume=resume, progress=progress, state_dir=out,
                          unweighted=unweighted)
