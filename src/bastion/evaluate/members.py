"""Each ensemble member evaluated alone, so the report can put the ensemble's robustness next to theirs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from bastion.attacks import FGSM, PGD
from bastion.defenses import Defended, Ensemble
from bastion.evaluate.config import EvalConfig
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stages import attack_stage, clean_stage

__all__ = ["ensemble_section", "find_ensemble", "members_stage"]


def find_ensemble(model: nn.Module) -> Ensemble | None:
    """The first `Ensemble` inside `model` (itself included), or None."""
    return next((m for m in model.modules() if isinstance(m, Ensemble)), None)


def _deployed(model: nn.Module, ensemble: Ensemble, member: nn.Module) -> nn.Module:
    """The member behind the same defenses as the ensemble (when the model is `Defended(defenses, ensemble)`)."""
    if isinstance(model, Defended) and model.model is ensemble:
        return Defended([*model.inputs, *model.outputs], member)
    return member


def members_stage(ctx: EvalContext, config: EvalConfig, ensemble: Ensemble, stream: int) -> dict[str, Any]:
    """Clean accuracy and robust accuracy under the main attacks (FGSM, PGD with restarts) of each member."""
    members = []
    pgd = PGD(steps=config.steps, n_restarts=config.restarts, rel_step=config.rel_step, loss=config.loss)
    for i, (name, member) in enumerate(zip(ensemble.names, ensemble.members, strict=True)):
        sub = replace(ctx, model=_deployed(ctx.model, ensemble, member), warnings=[], examples=[], gallery_size=0)
        clean = clean_stage(sub)
        attacks = ([FGSM(loss=config.loss)] if config.fgsm else []) + [pgd]
        for j, attack in enumerate(attacks):
            attack_stage(sub, attack, "ensemble member", stream + 10 * i + j)
        members.append({"name": name, "clean_accuracy": clean.top1,
                        "robust_accuracy": float(sub.robust.float().mean()) if len(sub.robust) else 0.0,
                        "attacks": [a.name for a in attacks]})
    return {"mode": ensemble.mode, "members": members}


def ensemble_section(members: dict[str, Any] | None, robust: float, clean: float) -> dict[str, Any] | None:
    """The report's `ensemble` section: the members' numbers with the ensemble's own beside them."""
    if members is None:
        return None
    return {**members, "clean_accuracy": clean, "robust_accuracy": robust}
