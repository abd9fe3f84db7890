"""Suites as data: ordered lists of stages with their settings, as AutoAttack's versions already are.

A suite entry (`Entry`) names a stage, its kind, its settings in the suite, the flags bound to an
attack's parameters, and the flag that turns it on. The `autoattack` kind is the one macro: it
expands into one attack stage per member of the chosen AutoAttack version (`VERSIONS`), so the
report shows the robust accuracy after each member and a resumed run restarts at the member it
stopped in. `plan` turns an `EvalConfig` into the stages to run: the suite's entries the options
turn on, each stage's settings from its kind's flags (`Stage.from_flags`: the stage owns the
mapping) and the entry's bound ones, and the TOML's `[stages.NAME]` tables last (they override any
setting of the stage called NAME).

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
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from bastion.attacks.autoattack import member_specs
from bastion.errors import InputError
from bastion.evaluate.records import AttackKind
from bastion.evaluate.stage import STAGES, Stage
from bastion.evaluate.stages import AttackSettings, find_ensemble
from bastion.models import is_gradient_free

if TYPE_CHECKING:
    from bastion.evaluate.config import EvalConfig

__all__ = ["SUITES", "Entry", "plan"]

#: A condition on the run's options and model under which an entry runs.
Condition = Callable[[Mapping[str, Any], "nn.Module | None"], bool]


@dataclass(frozen=True)
class Entry:
    """One stage of a suite.

    Args:
        name: The stage's name in the suite (its `[stages.NAME]` table, its random stream).
        kind: The registered stage kind (`STAGES`), or `autoattack`, the one macro (a stage per
            member of the `aa_version` flag's AutoAttack version).
        settings: The stage's settings in this suite; the flags (`Stage.from_flags`, `bind`) go over them.
        bind: Settings this entry takes from flags, setting -> flag name; `params.X` is the attack's
            constructor argument X (an attack stage's flags depend on its attack, so the suite says).
        when: The flag that must be set for the entry to run (`fgsm`, `certify`, ...), or a condition on
            the options and the model; None: always.
    """

    name: str
    kind: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    bind: Mapping[str, str] = field(default_factory=dict)
    when: str | Condition | None = None

    def wanted(self, options: Mapping[str, Any], model: nn.Module | None) -> bool:
        """Whether this entry runs with these options on this model."""
        if self.when is None:
            return True
        if isinstance(self.when, str):
            return bool(options[self.when])
        return self.when(options, model)

    def settings_from(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The suite's settings under the stage kind's flags and this entry's bound ones (unset flags: none)."""
        kind = typing.cast("type[Stage]", STAGES.get(self.kind))
        flagged = {k: v for k, v in kind.from_flags(options).items() if v is not None}
        merged: dict[str, Any] = {**self.settings, **flagged}
        params = {**self.settings.get("params", {}), **flagged.get("params", {})}
        for setting, flag in self.bind.items():
            if options[flag] is None:
                continue
            if setting.startswith("params."):
                params[setting.removeprefix("params.")] = options[flag]
            else:
                merged[setting] = options[flag]
        if params or "params" in merged:
            merged["params"] = params
        return merged


def _ensemble_model(options: Mapping[str, Any], model: nn.Module | None) -> bool:
    return model is not None and find_ensemble(model) is not None


_PGD = {"params.steps": "steps", "params.n_restarts": "restarts", "params.rel_step": "rel_step",
        "params.loss": "loss"}
_CORE = [
    Entry("clean", "clean"),
    Entry("fgsm", "attack", {"attack": "fgsm", "role": "sanity check", "kind": AttackKind.SANITY},
          {"params.loss": "loss"}, when="fgsm"),
    Entry("pgd", "attack", {"attack": "pgd", "params": {"steps": 20, "n_restarts": 5}, "role": "main attack",
                            "kind": AttackKind.MAIN}, _PGD),
]
#: The stages the options add after the curve, in order: ensemble members, minimal norms, certification.
_OPTIONAL = [Entry("members", "members", when=_ensemble_model), Entry("min-norm", "min-norm", when="min_norm"),
             Entry("certify", "certify", when="certify")]
_AUDIT = [Entry("checks", "checks"), Entry("escalation", "escalation"), Entry("curve", "curve"), *_OPTIONAL]
_LAST = [Entry("detection", "detection", when="detect"), Entry("per-class", "per-class")]
_AUTOATTACK = Entry("autoattack", "autoattack")
_SURROGATE = {"params.surrogate": "surrogate", "params.surrogate_weights": "surrogate_weights"}

#: The suites `--suite` chooses from, in run order; `per-class` reads the final worst case, so it runs last.
SUITES: dict[str, list[Entry]] = {
    "pgd": [*_CORE, *_AUDIT, *_LAST],
    "autoattack": [*_CORE, _AUTOATTACK, *_AUDIT, *_LAST],
    "fast": [Entry("clean", "clean"), Entry("probes", "probes"), _CORE[1],
             Entry("apgd-fast", "attack", {"attack": "apgd-fast", "role": "main attack (AutoAttack-strength, fast)",
                                           "kind": AttackKind.MAIN, "adaptive": True},
                   {"eot_samples": "eot_samples", "params.steps": "aa_steps", "params.target_steps": "aa_steps"}),
             Entry("checks", "checks", {"blackbox_points": 64}), Entry("escalation", "escalation"),
             Entry("audit", "audit"), Entry("curve", "curve", {"below_from_cascade": True}), *_OPTIONAL, *_LAST],
    "extended": [*_CORE, _AUTOATTACK, *_AUDIT, Entry("extended", "extended"), *_LAST],
    "deployed": [Entry("clean", "clean"), Entry("agreement", "agreement", when="surrogate"),
                 Entry("transfer", "attack", {"attack": "transfer", "params": {"steps": 40, "diversity": 0.5},
                                              "role": "transfer from the surrogate (MI-FGSM, input diversity)",
                                              "kind": AttackKind.TRANSFER},
                       {**_SURROGATE, "params.loss": "loss"}, when="surrogate"),
                 Entry("square", "attack", {"attack": "square", "params": {"n_queries": 5000},
                                            "role": "gradient-free main attack", "kind": AttackKind.MAIN},
                       {"params.n_queries": "aa_queries"}),
                 Entry("hopskipjump", "attack", {"attack": "hopskipjump", "params": {"n_queries": 1000},
                                                 "role": "label-only", "kind": AttackKind.QUERY}),
                 *_LAST],
}


def plan(config: EvalConfig, model: nn.Module | None = None) -> list[Stage]:
    """The stages an evaluation with `config` runs on `model`, in order."""
    suite = "deployed" if model is not None and is_gradient_free(model) else config.suite
    options = config.view()
    stages: list[Stage] = []
    for entry in SUITES[suite]:
        if not entry.wanted(options, model):
            continue
        if entry.kind == "autoattack":
            version = options["aa_version"]
            for attack, params in member_specs(version, steps=options["aa_steps"], n_queries=options["aa_queries"]):
                stages.append(_build(attack, "attack", {"attack": attack, "params": params,
                                                        "role": f"autoattack {version}",
                                                        "kind": AttackKind.AUTOATTACK}))
            continue
        stages.append(_build(entry.name, entry.kind, entry.settings_from(options)))
    return _override(stages, config.stages)


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
