"""The evaluation protocol end to end: model + data + threat model -> `EvalResult`.

The order is the field's (Carlini et al. 2019, arXiv:1902.06705; see PROTOCOL.md): clean
baseline, FGSM sanity check, PGD with restarts, accuracy-vs-eps curve, per-class robustness.
Misclassified points are never attacked, each attack runs only on the points still robust, and
the robust accuracy reported is the per-sample worst case over every attack run.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import sys
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bastion.attacks import ATTACKS, FGSM, PGD, Attack
from bastion.attacks.autoattack import build_members
from bastion.certify.stage import certify_stage
from bastion.data import ImageSet, load_dataset
from bastion.defenses import Ensemble, apply_defenses
from bastion.evaluate import masking
from bastion.evaluate.config import EvalConfig
from bastion.evaluate.context import EvalContext, Example
from bastion.evaluate.escalation import (
    Audit,
    build_verdict,
    count_check_hits,
    curve_settings,
    run_checks,
    run_escalation,
)
from bastion.evaluate.extended import extended_stage
from bastion.evaluate.members import ensemble_section, find_ensemble, members_stage
from bastion.evaluate.result import (
    AttackRecord,
    CleanRecord,
    CurvePoint,
    EvalResult,
    GalleryItem,
    Summary,
)
from bastion.evaluate.stages import attack_stage, clean_stage, curve_stage, min_norm_stage, per_class_stage
from bastion.evaluate.state import StageState, state_key
from bastion.evaluate.verdicts import protocol_warnings
from bastion.models import load_model, model_device_dtype
from bastion.models.loading import fingerprint_model
from bastion.render.png import image_to_data_uri, perturbation_to_data_uri
from bastion.threat import ThreatModel

__all__ = ["evaluate", "evaluate_model", "main_attacks"]

logger = logging.getLogger(__name__)


def main_attacks(config: EvalConfig) -> list[tuple[Attack, str]]:
    """The cascade at the threat model's eps, in order, with each attack's role.

    FGSM (sanity check), PGD with restarts, then with the `autoattack` suite the members of the
    chosen AutoAttack version, each as its own stage so the report shows the accuracy after each.
    """
    attacks: list[tuple[Attack, str]] = []
    if config.fgsm:
        attacks.append((FGSM(loss=config.loss), "sanity check"))
    pgd = PGD(steps=config.steps, n_restarts=config.restarts, rel_step=config.rel_step, loss=config.loss)
    attacks.append((pgd, "main attack"))
    if config.suite in ("autoattack", "extended"):
        attacks += [(member, f"autoattack {config.aa_version}") for member in build_members(
            config.aa_version, steps=config.aa_steps, n_queries=config.aa_queries)]
    return attacks


def evaluate(config: EvalConfig, *, progress: bool = False, command: str | None = None) -> EvalResult:
    """Load the model (or ensemble) and data a config names, and evaluate them; progress is kept in `config.out`."""
    options: dict[str, Any] = {"weights": config.weights, "mean": config.mean, "std": config.std,
                               "device": config.device}
    if config.ensemble:
        members = [load_model(spec, **options).module for spec in config.ensemble]
        model: nn.Module = Ensemble(members, mode=config.ensemble_mode, names=list(config.ensemble))
    else:
        model = load_model(config.model, **options).module
    data = load_dataset(config.data, root=config.data_root, limit=config.limit, seed=config.subset_seed)
    return evaluate_model(model, data, config, progress=progress, command=command, state_dir=config.out)


def evaluate_model(
    model: nn.Module,
    data: ImageSet,
    config: EvalConfig,
    *,
    progress: bool = False,
    command: str | None = None,
    state_dir: str | Path | None = None,
) -> EvalResult:
    """Run the protocol on an in-memory model and data set, with the gradient-masking audit.

    Args:
        model: Maps images in [0, 1], shape (N, C, H, W), to logits; its device and dtype are used.
            `config.defense` is applied to it here.
        data: The evaluation points.
        config: Threat model and attack settings (its `model` and `data` strings are only recorded).
        progress: Show progress bars.
        command: The command line, recorded in the provenance.
        state_dir: Where to save progress after each stage (`state.pt`); with `config.resume`, the
            stages a matching earlier run finished are not run again.

    Example:
        >>> result = evaluate_model(model, load_dataset("mnist-sample", limit=500), EvalConfig(eps=0.3))
        >>> result.summary.robust_accuracy
    """
    model = apply_defenses(model, config.defense)
    device, dtype = model_device_dtype(model)
    threat = ThreatModel(config.norm, config.eps)
    ctx = EvalContext(model, data, threat, device, dtype, config.batch_size, config.seed, progress, config.gallery)
    key = state_key(config.to_dict(), fingerprint_model(model), data.fingerprint)
    state = StageState(state_dir, key, config.resume)
    state.restore(ctx)
    if "clean" in state.done:
        clean = CleanRecord(**state.done["clean"])
    else:
        clean = clean_stage(ctx)
        state.save("clean", asdict(clean), ctx)
    records: list[AttackRecord] = []
    fgsm_broken = None
    for stream, (attack, role) in enumerate(main_attacks(config)):
        name = f"attack {stream} {attack.name}"
        if name not in state.done:
            state.save(name, asdict(attack_stage(ctx, attack, role, stream)), ctx)
            if stream == 0 and config.fgsm:
                state.save("fgsm broken", (ctx.correct & ~ctx.robust).clone(), ctx)
        records.append(AttackRecord(**state.done[name]))
    if config.fgsm and records:
        records[0] = _with_standalone(records[0])
        fgsm_broken = state.done.get("fgsm broken")
    if "flattering" not in state.done:  # the standard attacks' number, before any check or escalation
        state.save("flattering", float(ctx.robust.float().mean()) if len(data) else 0.0, ctx)
    flattering = float(state.done["flattering"])
    grid = _curve_grid(config)
    curve_attack = PGD(steps=config.steps, n_restarts=config.curve_restarts, rel_step=config.rel_step,
                       loss=config.loss)
    audit, curve = _audit(ctx, config, state, records, fgsm_broken, curve_attack, grid)
    records += audit.records
    ensemble = find_ensemble(model)
    if ensemble is not None and "members" not in state.done:
        state.save("members", members_stage(ctx, config, ensemble, stream=500), ctx)
    if config.min_norm and "min_norm" not in state.done:
        attack = ATTACKS.create(config.min_norm)
        state.save("min_norm", min_norm_stage(ctx, attack, grid or [0.0, threat.eps], stream=200), ctx)
    if config.certify and "certify" not in state.done:
        state.save("certify", certify_stage(ctx, sigma=config.sigma, n0=config.n0, n=config.n, alpha=config.alpha),
                   ctx)
    certified = state.done.get("certify")
    if config.suite == "extended" and "extended" not in state.done:
        state.save("extended", extended_stage(ctx, config), ctx)
    if config.detect and "detection" not in state.done:
        state.save("detection", _detection(ctx, config), ctx)
    per_class, floor = per_class_stage(ctx, config.class_floor)
    robust_accuracy = float(ctx.robust.float().mean()) if len(data) else 0.0
    verdict = build_verdict(audit, robust_accuracy, flattering, model)
    model_id, data_id = config.model_id(type(model).__name__), config.data or data.name
    summary = Summary(clean.top1, robust_accuracy, threat.norm.name, threat.eps, len(data), model_id, data_id)
    warnings = ctx.warnings + protocol_warnings(clean.top1, records, curve, threat.eps)
    warnings += certified["warnings"] if certified else []
    state.finish()
    created = datetime.now(timezone.utc)
    provenance = _provenance(model, data, config, device, dtype, command)
    return EvalResult(
        run_id=_run_id(created, provenance, config),
        created_at=created.isoformat(timespec="seconds"),
        summary=summary,
        clean=clean,
        attacks=records,
        curve=curve,
        per_class=per_class,
        class_floor=floor,
        gallery=[_gallery_item(e, threat) for e in ctx.gallery()],
        warnings=warnings,
        provenance=provenance,
        config=config.to_dict(),
        curve_settings=curve_settings(curve_attack, audit) if grid else {},
        min_norm=state.done.get("min_norm"),
        certify=certified,
        verdict=verdict,
        ensemble=ensemble_section(state.done.get("members"), robust_accuracy, clean.top1),
        extended=state.done.get("extended"),
        detection=state.done.get("detection"),
    )


def _audit(
    ctx: EvalContext,
    config: EvalConfig,
    state: StageState,
    records: list[AttackRecord],
    fgsm_broken: Tensor | None,
    curve_attack: Attack,
    grid: list[float],
) -> tuple[Audit, list[CurvePoint]]:
    """The gradient-masking checks, the escalation where one fires, and the curve (escalated if it was)."""
    audit = run_checks(ctx, config, state, records, fgsm_broken)
    ran_square = any(r.name == "square" for r in records)
    if config.adaptive or audit.fired:
        run_escalation(ctx, config, state, audit, ran_square=ran_square)
    count_check_hits(ctx, state, audit)
    curve = _curve(ctx, state, curve_attack, grid, audit)
    plateau = masking.plateau_finding(curve, ctx.threat.eps)
    audit.findings.append(plateau)
    if plateau.fired and not audit.escalated:
        run_escalation(ctx, config, state, audit, ran_square=ran_square)
        curve = _curve(ctx, state, curve_attack, grid, audit)
    return audit, curve


def _curve(ctx: EvalContext, state: StageState, attack: Attack, grid: list[float], audit: Audit) -> list[CurvePoint]:
    """The accuracy-vs-eps curve; after an escalation, attacked through the adaptive view of the model."""
    adaptive = audit.adaptive
    name = "curve" if adaptive is None else "curve (escalated)"
    model = None if adaptive is None else adaptive.module
    if name not in state.done:
        state.save(name, [asdict(p) for p in curve_stage(ctx, attack, grid, stream=100, model=model)] if grid else [],
                   ctx)
    return [CurvePoint(**p) for p in state.done[name]]


def _detection(ctx: EvalContext, config: EvalConfig) -> dict[str, Any]:
    """Detectors calibrated at `config.detect_fpr`, rated on FGSM and PGD examples, then attacked adaptively."""
    from bastion.detect import detection_stage

    calibration = None
    if config.detect_calibration:
        calibration = load_dataset(config.detect_calibration, root=config.data_root)
    attacks = [FGSM(loss=config.loss), PGD(steps=config.steps, rel_step=config.rel_step, loss=config.loss)]
    return detection_stage(ctx, fpr=config.detect_fpr, calibration=calibration, attacks=attacks,
                           adaptive_limit=config.detect_adaptive_limit, stream=400)


def _with_standalone(record: AttackRecord) -> AttackRecord:
    """The first attack saw every correct point, so its cumulative accuracy is also its own."""
    return replace(record, standalone_accuracy=record.robust_accuracy)


def _curve_grid(config: EvalConfig) -> list[float]:
    if config.curve_points == 0:
        return []
    top = config.curve_max if config.curve_max is not None else 2 * config.eps
    if config.curve_points == 1:
        return [config.eps]
    grid = [float(v) for v in np.linspace(0.0, top, config.curve_points)]
    if all(abs(v - config.eps) > 1e-9 for v in grid) and config.eps <= top:
        grid = sorted([*grid, config.eps])
    return grid


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
            "bastion": _bastion_version(),
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
        "dtype": str(dtype).removeprefix("torch."),
        "platform": platform.platform(),
        "command": command if command is not None else " ".join(sys.argv),
    }


def _bastion_version() -> str:
    from bastion import __version__

    return __version__


def _run_id(created: datetime, provenance: dict[str, Any], config: EvalConfig) -> str:
    key = f"{provenance['model']['fingerprint']}{provenance['data']['fingerprint']}{sorted(config.to_dict().items())}"
    return f"{created:%Y%m%d-%H%M%S}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
