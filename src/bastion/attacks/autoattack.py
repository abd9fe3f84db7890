"""AutoAttack: the standard ensemble of diverse parameter-free attacks, run as a cascade."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks.base import ATTACKS, Attack, AttackResult, check_inputs
from bastion.attacks.versions import VERSIONS
from bastion.errors import InputError
from bastion.passes import PassCount
from bastion.threat import ThreatModel

__all__ = ["VERSIONS", "AutoAttack", "EnsembleResult", "build_members", "member_specs"]


def member_specs(version: str, **overrides: Any) -> list[tuple[str, dict[str, Any]]]:
    """(attack name, hyperparameters) of a version's members, in order.

    `overrides` (None values ignored) apply to the members that accept them.
    """
    specs = []
    for name, params in VERSIONS.create(version):  # an unknown version: one line listing the registered ones
        accepted = inspect.signature(ATTACKS.get(name)).parameters
        extra = {k: v for k, v in overrides.items() if v is not None and k in accepted}
        specs.append((name, {**params, **extra}))
    return specs


def build_members(version: str, **overrides: Any) -> list[Attack]:
    """The attacks of a version, in order; `overrides` (None values ignored) apply to members that accept them."""
    return [ATTACKS.create(name, **params) for name, params in member_specs(version, **overrides)]


@dataclass(frozen=True)
class EnsembleResult:
    """The cascade's result and the robust accuracy after each member (share of the whole batch)."""

    result: AttackResult
    robust_after: dict[str, float]


@ATTACKS.register("autoattack")
class AutoAttack(Attack):
    """AutoAttack (Croce & Hein, ICML 2020, arXiv:2003.01690): APGD-CE, APGD-T, FAB-T and Square in cascade.

    Each attack runs only on the points every earlier one failed to break, and each point keeps the
    first adversarial example found: the per-sample worst case over the ensemble. The `standard`
    version is the reference for robustness claims; `plus` adds restarts and untargeted variants;
    `rand` uses EOT (20 gradient samples) for randomized defenses. In `bastion evaluate` the
    members run as separate stages of the pipeline's cascade, each with its own line in the report.

    Args:
        version: A name in `VERSIONS` (`bastion.attacks.versions`): "standard", "plus" or "rand".
        steps: Iterations of the gradient-based members (None keeps the version's 100).
        n_queries: Square's query budget (None keeps the version's 5,000).

    Example:
        >>> AutoAttack()(model, x, y, ThreatModel("linf", 8 / 255)).success.float().mean()
    """

    name: ClassVar[str] = "autoattack"
    supports_target: ClassVar[bool] = False

    def __init__(self, version: str = "standard", steps: int | None = None, n_queries: int | None = None) -> None:
        self.version = VERSIONS.canonical(version)  # an unknown version: one line listing the registered ones
        self.steps = steps
        self.n_queries = n_queries

    def members(self) -> list[Attack]:
        """The member attacks of this version, in cascade order."""
        return build_members(self.version, steps=self.steps, n_queries=self.n_queries)

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Run the members in cascade on the points still robust."""
        if target is not None:
            raise InputError("AutoAttack is untargeted (APGD-T and FAB-T choose their own targets)")
        return self.run(model, x, y, threat, generator=generator).result.x_adv

    def run(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> EnsembleResult:
        """Attack like `__call__`, and also report the robust accuracy after each member.

        Every member's own `__call__` clips its output into the threat model and verifies its
        successes on the model, so the combined result needs no further check.
        """
        check_inputs(x, y, threat)
        start = time.perf_counter()
        x = x.detach()
        x_adv, success, predictions = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device), y.clone()
        passes, after = PassCount(), {}
        for attack in self.members():
            rows = (~success).nonzero().squeeze(1)
            if rows.numel():
                result = attack(model, x[rows], y[rows], threat, generator=generator)
                broken = rows[result.success]
                x_adv[broken] = result.x_adv[result.success]
                predictions[broken] = result.predictions[result.success]
                success[broken] = True
                passes = passes + result.passes
            after[attack.name] = 1.0 - float(success.float().mean()) if len(x) else 0.0
        result = AttackResult(x_adv, success, threat.norm.measure(x_adv - x), predictions, passes,
                              time.perf_counter() - start)
        return EnsembleResult(result=result, robust_after=after)
