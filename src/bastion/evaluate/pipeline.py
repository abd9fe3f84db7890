"""The evaluation protocol end to end: model + data + threat model -> `EvalResult`.

The order is the field's (Carlini et al. 2019, arXiv:1902.06705; see PROTOCOL.md): clean
baseline, FGSM sanity check, PGD with restarts, the AutoAttack members, the gradient-masking checks
and the escalation they call for, the accuracy-vs-eps curve, per-class robustness. The suite
(`bastion.evaluate.suites`) says which stages run; the runner (`bastion.evaluate.runner`) runs
them; this module loads what the config names and assembles the report from the stages' results.
Misclassified points are never attacked, each attack runs only on the points still robust, and the
robust accuracy reported is the per-sample worst case over every attack run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bastion import distributed
from bastion.data import ImageSet, load_dataset
from bastion.defenses import Defended, Ensemble, apply_defenses
from bastion.errors import InputError
from bastion.evaluate.config import EvalConfig
from bastion.evaluate.context import EvalContext, Example
from bastion.evaluate.report_schema import attack_table
from bastion.evaluate.result import CleanRecord, EvalResult, GalleryItem, StageRecord, Summary
from bastion.evaluate.runner import Runner
from bastion.evaluate.stages import CleanResult
from bastion.evaluate.stages.clean import mean_of
from bastion.evaluate.suites import plan
from bastion.evaluate.verdict import build_verdict
from bastion.evaluate.verdicts import chance_finding, protocol_warnings, unweighted_factory_warning
from bastion.models import is_gradient_free, load_model, model_device_dtype
from bastion.models.loading import fingerprint_model
from bastion.outputs import returning_logits
from bastion.render.png import image_to_data_uri, perturbation_to_data_uri
from bastion.threat import ThreatModel
from bastion.version import __version__

__all__ = ["evaluate", "evaluate_model", "run_identity"]

logger = logging.getLogger(__name__)

#: Options that change every stage's numbers: a resumed run must match them all.
_RUN_OPTIONS = ("norm", "eps", "seed", "batch_size", "defense", "ensemble", "ensemble_mode", "gallery", "limit",
                "subset_seed")


def evaluate(config: EvalConfig, *, resume: bool = False, progress: bool = False,
             command: str | None = None) -> EvalResult:
    """Load the model (or ensemble) and data a config names, and evaluate them; progress is kept in `config.out`.

    With `resume`, the stages a matching earlier run saved in `config.out` are not run again.
    """
    here = distributed.world()  # under torchrun: this rank's GPU (LOCAL_RANK) or the CPU
    options: dict[str, Any] = {"weights": config.weights, "mean": config.mean, "std": config.std,
                               "device": here.device if here.active and here.device else config.device}
    if config.weights and Path(config.model).suffix == ".onnx":
        # A deployed ONNX file carries its weights: --weights belongs to the PyTorch surrogate it came from.
        if not config.flag("surrogate"):
            raise InputError("an .onnx model carries its own weights; --weights needs a --surrogate to go to")
        weights = config.flag("surrogate_weights") or config.weights
        config = replace(config, weights=None, options={**config.options, "surrogate_weights": weights})
        options["weights"] = None
    if config.ensemble:
        members = [load_model(spec, **options).module for spec in config.ensemble]
        model: nn.Module = Ensemble(members, mode=config.ensemble_mode, names=list(config.ensemble))
    else:
        model = load_model(config.model, **options).module
    data = load_dataset(config.data, root=config.data_root, limit=config.limit, seed=config.subset_seed)
    unweighted = [s for s in (config.ensemble or [config.model]) if _factory_spec(s)] if not config.weights else []
    for spec in unweighted:
        logger.warning(unweighted_factory_warning(spec))
    return evaluate_model(model, data, config, resume=resume, progress=progress, command=command,
                          state_dir=config.out, unweighted=unweighted)


def evaluate_model(
    model: nn.Module,
    data: ImageSet,
    config: EvalConfig,
    *,
    resume: bool = False,
    progress: bool = False,
    command: str | None = None,
    state_dir: str | Path | None = None,
    unweighted: list[str] | None = None,
) -> EvalResult:
    """Run the suite's stages on an in-memory model and data set, and assemble the report.

    Args:
        model: Maps images in [0, 1], shape (N, C, H, W), to logits; its device and dtype are used.
            `config.defense` is applied to it here.
        data: The evaluation points.
        config: Threat model, suite and stage settings (its `model` and `data` strings are only recorded).
        resume: Restore the stages a matching earlier run saved in `state_dir` instead of running them.
        progress: Show progress bars.
        command: The command line, recorded in the provenance.
        state_dir: Where to save progress after each stage (`state.pt`); None keeps none.
        unweighted: The model specs a factory built without weights (untrained unless the factory loads
            some itself): the report warns, and a clean accuracy not clearly above chance makes the
            verdict "meaningless".

    Example:
        >>> result = evaluate_model(model, load_dataset("mnist-sample", limit=500), EvalConfig(eps=0.3))
        >>> result.summary.robust_accuracy
    """
    model = apply_defenses(returning_logits(model), config.defense)
    device, dtype = model_device_dtype(model)
    config.check_input_shape(data.shape)  # an L2 ball over the whole box (eps >= sqrt(d)), before any stage runs
    threat = ThreatModel(config.norm, config.eps)
    ctx = EvalContext(model, data, threat, device, dtype, config.batch_size, config.seed, progress,
                      config.flag("gallery"))
    counted = model.model if isinstance(model, Defended) else model
    identity = run_identity(config, fingerprint_model(model), data.fingerprint)
    runner = Runner(plan(config, model), state_dir=state_dir, resume=resume, counted=counted,
                    run_key=_hash(identity), identity=identity)
    records = runner.run(ctx)
    result = _assemble(ctx, config, records, command, list(unweighted or []))
    runner.finish()
    return result


def run_identity(config: EvalConfig, model_fingerprint: str, data_fingerprint: str) -> dict[str, Any]:
    """What a saved state belongs to: the model, the data and the options every stage depends on."""
    options = {k: v for k, v in config.to_dict().items() if k in _RUN_OPTIONS}
    return {"model fingerprint": model_fingerprint, "data fingerprint": data_fingerprint, **options}


def _hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _assemble(ctx: EvalContext, config: EvalConfig, stages: list[StageRecord], command: str | None,
              unweighted: list[str]) -> EvalResult:
    """The report: its header and verdict read off the stages' results, and the stages themselves.

    The attack table and the findings are read through every result's interface
    (`StageResult.attack_records`, `StageResult.verdict_findings`), as the report's readers read them.
    """
    clean = ctx.earlier(CleanResult)
    if clean is None:
        raise InputError("a suite must begin with the clean stage")
    results = list(ctx.results.values())
    records = attack_table(results)
    n = len(ctx.data)
    robust = mean_of(ctx.robust)
    summary = Summary(clean.top1, robust, ctx.threat.norm.name, ctx.threat.eps, n,
                      config.model_id(type(ctx.model).__name__), config.data or ctx.data.name)
    notes = [unweighted_factory_warning(spec) for spec in unweighted]
    chance = chance_finding(clean.n_correct, n, len(ctx.data.classes), unweighted=bool(unweighted))
    if chance is not None:
        notes.append(f"{chance.detail}: {chance.action.removeprefix('reported: ')}; the verdict is meaningless")
    created = datetime.now(timezone.utc)
    provenance = _provenance(ctx.model, ctx.data, config, ctx.device, ctx.dtype, command)
    return EvalResult(
        run_id=_run_id(created, provenance, config),
        created_at=created.isoformat(timespec="seconds"),
        summary=summary,
        clean=CleanRecord(top1=clean.top1, top5=clean.top5, n_correct=clean.n_correct),
        gallery=[_gallery_item(e, ctx.threat) for e in ctx.gallery()],
        warnings=notes + ctx.warnings + protocol_warnings(clean.top1, records, ctx.threat.eps) + _deployed(ctx.model),
        provenance=provenance,
        config=config.to_dict(),
        verdict=build_verdict(results, robust, ctx.model, chance=chance),
        stages=stages,
    )


def _factory_spec(spec: str) -> bool:
    """Whether a model spec names a factory (`module:factory`, `file.py:factory`), which --weights completes."""
    return ":" in spec and not spec.startswith(("zoo:", "hf:")) and not Path(spec).exists()


def _deployed(model: nn.Module) -> list[str]:
    """The warning a gradient-free (deployed, e.g. ONNX) model's report carries."""
    if not is_gradient_free(model):
        return []
    return ["the model runs without gradients (a deployed ONNX model): gradient attacks and the masking checks "
            "were skipped; the robust accuracy is an upper bound from query-based (Square, HopSkipJump) and "
            "transfer attacks"]


def _gallery_item(example: Example, threat: ThreatModel) -> GalleryItem:
    side = max(example.x.shape[-2:])
    scale = max(1, 112 // side)
    delta = example.x_adv - example.x
    return GalleryItem(
        index=example.index,
        label=example.label,
        clean_prediction=example.clean_prediction,
        adversarial_prediction=example.adversarial_prediction,
        attack=example.attack,
        norm=float(threat.norm.measure(delta[None])[0]),
        clean_png=image_to_data_uri(example.x, scale=scale),
        adversarial_png=image_to_data_uri(example.x_adv, scale=scale),
        perturbation_png=perturbation_to_data_uri(delta, scale=scale),
    )


def _provenance(
    model: nn.Module, data: ImageSet, config: EvalConfig, device: torch.device, dtype: torch.dtype, command: str | None
) -> dict[str, Any]:
    return {
        "seed": config.seed,
        "versions": {
            "bastion": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "model": {
            "spec": config.model or None,
            "class": type(model).__name__,
            "fingerprint": fingerprint_model(model),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "data": {
            "spec": config.data or data.name,
            "fingerprint": data.fingerprint,
            "n": len(data),
            "shape": list(data.shape),
        },
        "device": str(device),
        "processes": distributed.world().size,
        "dtype": str(dtype).removeprefix("torch."),
        "platform": platform.platform(),
        "command": command if command is not None else " ".join(sys.argv),
    }


def _run_id(created: datetime, provenance: dict[str, Any], config: EvalConfig) -> str:
    key = f"{provenance['model']['fingerprint']}{provenance['data']['fingerprint']}{sorted(config.to_dict().items())}"
    return f"{created:%Y%m%d-%H%M%S}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
