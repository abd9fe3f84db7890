"""Suites as data: ordered lists of stages with their settings, as AutoAttack's versions already are.

A suite entry is (stage name, stage kind, settings). The `autoattack` kind is the one macro: it
expands into one attack stage per member of the chosen AutoAttack version (`VERSIONS`), so the
report shows the robust accuracy after each member and a resumed run restarts at the member it
stopped in. `plan` turns an `EvalConfig` into the stages to run: the suite, the flat options of the
CLI and the TOML file mapped onto stage settings, the optional stages the options ask for, and the
TOML's `[stages.NAME]` tables last (they override any setting of the stage called NAME).

The `fast` suite replaces PGD and the AutoAttack members by one `apgd-fast` stage (ODI-started
margin APGD, then targeted margin APGD on the MALT-nearest classes): AutoAttack's robust accuracy on
the zoo's models for about a twentieth of its passes (`benchmarks/bench_fast.py`). It probes first
(`probes`: randomness, shattered gradients), so `apgd-fast` goes straight through the adaptive view
when plain gradients cannot work; after the checks and escalation an `audit` runs the standard
AutoAttack on a sample of the points left robust and escalates to all of them after a miss; the
curve starts its radii below eps from the cascade's own adversarial examples and attacks the
points they leave robust.

A model without gradients (a deployed ONNX file) gets the `deployed` suite whatever `--suite` says:
query-based attacks (Square, HopSkipJump), and with a `--surrogate` the transfer attack and a
comparison of the two models' predictions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from torch import nn

from bastion.attacks.autoattack import member_specs
from bastion.errors import InputError
from bastion.evaluate.config import EvalConfig
from bastion.evaluate.stage import STAGES, Stage
from bastion.evaluate.stages import AttackSettings, find_ensemble
from bastion.models import is_gradient_free

__all__ = ["SUITES", "curve_grid", "plan"]

Entry = tuple[str, str, dict[str, Any]]

_CORE: list[Entry] = [
    ("clean", "clean", {}),
    ("fgsm", "attack", {"attack": "fgsm", "role": "sanity check"}),
    ("pgd", "attack", {"attack": "pgd", "params": {"steps": 20, "n_restarts": 5}, "role": "main attack"}),
]
_AUDIT: list[Entry] = [("checks", "checks", {}), ("escalation", "escalation", {}), ("curve", "curve", {})]

#: The suites `--suite` chooses from, in run order; `per-class` reads the final worst case, so it runs last.
SUITES: dict[str, list[Entry]] = {
    "pgd": [*_CORE, *_AUDIT, ("per-class", "per-class", {})],
    "autoattack": [*_CORE, ("autoattack", "autoattack", {"version": "standard"}), *_AUDIT,
                   ("per-class", "per-class", {})],
    "fast": [("clean", "clean", {}), ("probes", "probes", {}), _CORE[1],
             ("apgd-fast", "attack", {"attack": "apgd-fast", "role": "main attack (AutoAttack-strength, fast)",
                                      "adaptive": True}),
             ("checks", "checks", {"blackbox_points": 64}), ("escalation", "escalation", {}), ("audit", "audit", {}),
             ("curve", "curve", {"below_from_cascade": True}), ("per-class", "per-class", {})],
    "extended": [*_CORE, ("autoattack", "autoattack", {"version": "standard"}), *_AUDIT,
                 ("extended", "extended", {}), ("per-class", "per-class", {})],
    "deployed": [("clean", "clean", {}), ("agreement", "agreement", {}),
                 ("transfer", "attack", {"attack": "transfer", "params": {"steps": 40, "diversity": 0.5},
                                         "role": "transfer from the surrogate (MI-FGSM, input diversity)"}),
                 ("square", "attack", {"attack": "square", "params": {"n_queries": 5000},
                                       "role": "gradient-free main attack"}),
                 ("hopskipjump", "attack", {"attack": "hopskipjump", "params": {"n_queries": 1000},
                                            "role": "label-only"}),
                 ("per-class", "per-class", {})],
}


def curve_grid(config: EvalConfig) -> list[float]:
    """The radii of the accuracy-vs-eps curve: `curve_points` from 0 to `curve_max`, with the threat model's eps."""
    if config.curve_points == 0:
        return []
    top = config.curve_max if config.curve_max is not None else 2 * config.eps
    if config.curve_points == 1:
        return [config.eps]
    grid = [float(v) for v in np.linspace(0.0, top, config.curve_points)]
    if all(abs(v - config.eps) > 1e-9 for v in grid) and config.eps <= top:
        grid = sorted([*grid, config.eps])
    return grid


def plan(config: EvalConfig, model: nn.Module | None = None) -> list[Stage]:
    """The stages an evaluation with `config` runs on `model`, in order."""
    suite = "deployed" if model is not None and is_gradient_free(model) else config.suite
    entries = [e for e in SUITES[suite] if (config.fgsm or e[0] != "fgsm")
               and (config.surrogate or e[0] not in ("agreement", "transfer"))]
    settings = _flat_settings(config)
    stages: list[Stage] = []
    for name, kind, base in entries:
        if kind == "autoattack":
            version = config.aa_version if config.aa_version else base["version"]
            for attack, params in member_specs(version, steps=config.aa_steps, n_queries=config.aa_queries):
                stages.append(_build(attack, "attack", {"attack": attack, "params": params,
                                                        "role": f"autoattack {version}"}))
            continue
        stages.append(_build(name, kind, _merge(base, settings.get(name, {}))))
        if name == "curve":
            stages += _optional(config, model, settings)
    if config.detect:
        at = next((i for i, s in enumerate(stages) if s.kind == "per-class"), len(stages))
        stages.insert(at, _build("detection", "detection", settings["detection"]))
    return _override(stages, config.stages)


def _flat_settings(config: EvalConfig) -> dict[str, dict[str, Any]]:
    """Today's flat options (CLI flags, top-level TOML keys), mapped onto the settings of the stage that owns them."""
    attack = {"steps": config.steps, "rel_step": config.rel_step, "loss": config.loss}
    surrogate = {"surrogate": config.surrogate, "surrogate_weights": config.surrogate_weights}
    return {
        "fgsm": {"params": {"loss": config.loss}},
        "agreement": {"surrogate": config.surrogate or "", "weights": config.surrogate_weights},
        "transfer": {"params": {**surrogate, "loss": config.loss}},
        "square": {"params": {"n_queries": config.aa_queries}},
        "pgd": {"params": {"steps": config.steps, "n_restarts": config.restarts, "rel_step": config.rel_step,
                           "loss": config.loss}},
        "probes": {"probe_points": config.probe_points},
        "apgd-fast": {"eot_samples": config.eot_samples,
                      **({"params": {"steps": config.aa_steps, "target_steps": config.aa_steps}}
                         if config.aa_steps else {})},
        "audit": {"steps": config.aa_steps, "n_queries": config.aa_queries},
        "checks": {**attack, **surrogate, "probe_points": config.probe_points,
                   "blackbox_queries": config.blackbox_queries},
        "escalation": {"adaptive": config.adaptive, "eot_samples": config.eot_samples, "steps": config.steps,
                       **({"square_queries": config.aa_queries} if config.aa_queries else {}),
                       "restarts": config.restarts, "loss": config.loss, "blackbox_queries": config.blackbox_queries,
                       **surrogate},
        "curve": {**attack, "grid": curve_grid(config), "restarts": config.curve_restarts},
        "members": {**attack, "fgsm": config.fgsm, "restarts": config.restarts},
        "min-norm": {"attack": config.min_norm or "fab", "grid": curve_grid(config) or [0.0, config.eps]},
        "certify": {"sigma": config.sigma, "n0": config.n0, "n": config.n, "alpha": config.alpha,
                    "sequential": config.sequential},
        "extended": {"budget": dict(config.extended_budget), "train_data": config.extended_train_data,
                     "data_root": config.data_root, "device": config.device},
        "detection": {**attack, "fpr": config.detect_fpr, "calibration": config.detect_calibration,
                      "adaptive_limit": config.detect_adaptive_limit, "data_root": config.data_root},
        "per-class": {"floor": config.class_floor},
    }


def _merge(base: dict[str, Any], flat: dict[str, Any]) -> dict[str, Any]:
    """A suite entry's settings under the flat options (an attack's params merged key by key)."""
    merged = {**base, **flat}
    if "params" in base or "params" in flat:
        merged["params"] = {**base.get("params", {}), **flat.get("params", {})}
    return merged


def _optional(config: EvalConfig, model: nn.Module | None, settings: dict[str, dict[str, Any]]) -> list[Stage]:
    """The stages the options add after the curve: ensemble members, minimal norms, certification."""
    stages = []
    if model is not None and find_ensemble(model) is not None:
        stages.append(_build("members", "members", settings["members"]))
    if config.min_norm:
        stages.append(_build("min-norm", "min-norm", settings["min-norm"]))
    if config.certify:
        stages.append(_build("certify", "certify", settings["certify"]))
    return stages


def _build(name: str, kind: str, settings: dict[str, Any]) -> Stage:
    if kind == "attack":
        params = {k: v for k, v in dict(settings.get("params", {})).items() if v is not None}
        settings = {**settings, "params": params}
    return STAGES.get(kind)(name=name, **settings)


def _override(stages: list[Stage], tables: dict[str, Any]) -> list[Stage]:
    """Apply the TOML's `[stages.NAME]` tables; an attack stage's unknown keys go to the attack itself."""
    names = [s.name for s in stages]
    unknown = sorted(set(tables) - set(names))
    if unknown:
        raise InputError(f"[stages] names no stage {', '.join(unknown)} of this run; its stages: {', '.join(names)}")
    result = []
    for stage in stages:
        table = tables.get(stage.name)
        if not table:
            result.append(stage)
            continue
        if not isinstance(table, dict):
            raise InputError(f"[stages.{stage.name}] must be a table of settings")
        current = stage.settings_dict()
        if stage.kind == "attack":
            own = {f.name for f in dataclasses.fields(AttackSettings)}
            params = {**current["params"], **{k: v for k, v in table.items() if k not in own}}
            merged = {**current, **{k: v for k, v in table.items() if k in own}, "params": params}
        else:
            merged = {**current, **table}
        result.append(_build(stage.name, stage.kind, merged))
    return result
