"""The `extended` suite: threat models beyond the Lp ball, each as its own section of the report.

`bastion evaluate --suite extended` runs the standard protocol (FGSM, PGD, AutoAttack) and then this
stage, whose sections each state their threat model, budget and success rate:

- adversarial patch (Brown et al., 2017): trained on the first half of the evaluated points (or on
  the `extended_train_data` spec when the config names one) and measured pasted at random places on
  the second half (or on all evaluated points), so it is never measured on images it saw;
- spatial (Engstrom et al., ICML 2019): worst rotation and translation by grid search and by first-order
  steps, and the per-point worst case of both;
- common corruptions (Hendrycks & Dietterich, ICLR 2019): accuracy per corruption and severity, and the
  mCE against `baseline_model` when one is given;
- one-pixel (Su et al., 2019), universal perturbation (Moosavi-Dezfooli et al., 2017) and HopSkipJump
  (Chen et al., 2020), when those attacks are installed: a section says "skipped" otherwise.

Budgets default to moderate values and can be set per run with the config's `extended_budget` (a
table in the TOML config file, or `EvalConfig(extended_budget={...})`; the keys of `DEFAULTS`); the
report records the values used.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stages.extended_sections import SECTIONS, ExtendedOptions, ExtendedSection

__all__ = ["DEFAULTS", "ExtendedOptions", "extended_stage"]

#: Budgets of the extended sections; override any of them with `EvalConfig(extended_budget={...})`.
DEFAULTS: dict[str, Any] = {
    "patch_size": 0.1, "patch_shape": "square", "patch_steps": 300, "patch_target": None, "patch_placements": 4,
    "patch_train_limit": 2000,
    "spatial_angle": 30.0, "spatial_translation": 3.0, "spatial_angles": 31, "spatial_translations": 5,
    "spatial_steps": 20, "spatial_restarts": 1,
    "corruptions": None, "severities": [1, 2, 3, 4, 5], "baseline_model": None,
    "max_points": 100, "onepixel_pixels": 1, "onepixel_population": 100, "onepixel_steps": 30,
    "universal_method": "sgd", "universal_epochs": 20, "universal_eps": None, "hsj_queries": 1000,
    "gallery": 4,
}


def _settings(config: ExtendedOptions) -> dict[str, Any]:
    given = dict(config.extended_budget or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise InputError(f"unknown extended-suite setting(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **given}


def extended_stage(ctx: EvalContext, config: ExtendedOptions) -> dict[str, Any]:
    """Run every section of the extended suite; a JSON-ready dict `{"settings": ..., "sections": [...]}`.

    A section whose attack module is not installed is recorded as skipped, with the reason.
    """
    settings = _settings(config)
    sections = []
    for name, title, run in SECTIONS:
        start = time.perf_counter()
        try:
            section = run(ctx, config, settings)
        except ModuleNotFoundError as error:
            if not (error.name or "").startswith("bastion."):
                raise
            section = ExtendedSection(name, title, "—", {}, skipped=f"not available: {error}")
        sections.append({**asdict(section), "seconds": time.perf_counter() - start})
    return {"settings": settings, "sections": sections}
