"""The gradient-masking audit of every evaluation: run the checks, and where one fires, the adaptive attacks.

Kerckhoffs' rule applied to robustness (Athalye, Carlini & Wagner, ICML 2018, arXiv:1802.00420):
the attacker knows the defense. Where a check fires (or with `adaptive`), bastion attacks the
model as its defenses say it should be attacked: BPDA through the non-differentiable ones, EOT
over the random ones, a margin loss with more restarts, a transfer attack from a surrogate, and
the gradient-free Square attack. The escalated robust accuracy becomes the evaluation's number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from bastion.attacks import FGSM, PGD, Attack, Square, Transfer
from bastion.defenses import AdaptiveModel, Defended, adaptive_model, find_defenses
from bastion.evaluate import masking
from bastion.evaluate.config import EvalConfig
from bastion.evaluate.context import EvalContext
from bastion.evaluate.result import AttackRecord, Finding, Verdict
from bastion.evaluate.stages import attack_stage
from bastion.evaluate.state import StageState

__all__ = ["Audit", "build_verdict", "count_check_hits", "curve_settings", "run_checks", "run_escalation",
           "surrogate_of"]

_STREAM = 300  # random streams of the checks; the escalation uses _STREAM + 100 and up

Saver = Callable[[str, Callable[[], Any]], Any]


@dataclass
class Audit:
    """What the checks found and what the escalation ran, carried to the verdict."""

    findings: list[Finding] = field(default_factory=list)
    records: list[AttackRecord] = field(default_factory=list)
    hits: dict[str, list[int]] = field(default_factory=dict)
    adaptive: AdaptiveModel | None = None
    surrogate: str | None = None

    @property
    def fired(self) -> bool:
        """Whether any check fired."""
        return any(f.fired for f in self.findings)

    @property
    def escalated(self) -> bool:
        """Whether the adaptive attacks ran."""
        return self.adaptive is not None


def _saved(state: StageState, ctx: EvalContext, name: str, compute: Callable[[], Any]) -> Any:
    if name not in state.done:
        state.save(name, compute(), ctx)
    return state.done[name]


def surrogate_of(model: nn.Module, config: EvalConfig, device: torch.device) -> tuple[nn.Module | None, str | None]:
    """The transfer attack's surrogate: `config.surrogate`, else the undefended network inside a `Defended`."""
    if config.surrogate:
        from bastion.models import load_model

        return load_model(config.surrogate, device=str(device)).module, config.surrogate
    if isinstance(model, Defended) and (len(model.inputs) or len(model.outputs)):
        return model.model, "the undefended model"
    return None, None


def run_checks(
    ctx: EvalContext, config: EvalConfig, state: StageState, records: list[AttackRecord], fgsm_broken: Tensor | None
) -> Audit:
    """Run every check that needs no escalation (the plateau check needs the curve and runs later)."""
    audit = Audit()
    limit = config.probe_points

    def finding(name: str, compute: Callable[[], list[Finding]]) -> None:
        audit.findings += [Finding(**f) for f in _saved(state, ctx, f"check {name}",
                                                        lambda: [asdict(f) for f in compute()])]

    finding("outputs", lambda: masking.output_findings(ctx, limit))
    finding("gradients", lambda: masking.gradient_findings(ctx, limit))
    if fgsm_broken is not None:
        pgd = PGD(steps=config.steps, rel_step=config.rel_step, loss=config.loss)
        finding("fgsm", lambda: [masking.fgsm_finding(ctx, fgsm_broken, pgd, limit, _STREAM)])
    large = PGD(steps=config.steps, rel_step=config.rel_step, loss=config.loss)
    finding("large-eps", lambda: [masking.large_eps_finding(ctx, large, limit, _STREAM + 1)])
    square = Square(n_queries=config.blackbox_queries)
    hits: list[int] = []
    finding("black-box", lambda: [masking.blackbox_finding(ctx, square, limit, _STREAM + 2, hits=hits)])
    audit.hits[square.name] = _saved(state, ctx, "check black-box hits", lambda: hits)
    cascade_square = next((r for r in records if r.name == "square"), None)
    if cascade_square is not None:
        audit.findings.append(masking.cascade_finding(cascade_square, int(ctx.correct.sum())))
    surrogate, audit.surrogate = surrogate_of(ctx.model, config, ctx.device)
    if config.surrogate and surrogate is not None:
        transfer = Transfer(surrogate=surrogate, steps=config.steps, diversity=0.5, loss=config.loss)
        transfer_hits: list[int] = []
        finding("transfer", lambda: [masking.blackbox_finding(ctx, transfer, limit, _STREAM + 3, kind="transfer",
                                                              hits=transfer_hits)])
        audit.hits[transfer.name] = _saved(state, ctx, "check transfer hits", lambda: transfer_hits)
    return audit


def count_check_hits(ctx: EvalContext, state: StageState, audit: Audit) -> None:
    """Mark the points a black-box or transfer check broke, and the cascade missed, as broken.

    A check runs on a probe of the points, beside the cascade; what it finds is an adversarial
    example all the same, so it is counted (one record per check, after the attacks) even when the
    check does not fire: the robust accuracy never ignores a point known to be broken.
    """

    def count() -> list[dict[str, Any]]:
        records = []
        for name, hits in audit.hits.items():
            broken = torch.tensor(hits, dtype=torch.long)
            broken = broken[ctx.robust[broken]] if broken.numel() else broken
            if broken.numel() == 0:
                continue
            ctx.robust[broken] = False
            role = "masking check: points it broke that the attacks above missed"
            records.append(asdict(AttackRecord(
                name=name, role=role, settings={}, norm=ctx.threat.norm.name, eps=ctx.threat.eps,
                attacked=len(hits), fooled=int(broken.numel()), robust_accuracy=float(ctx.robust.float().mean()),
                passes={"forward": 0, "backward": 0, "forward_samples": 0, "backward_samples": 0}, seconds=0.0)))
        return records

    audit.records += [AttackRecord(**r) for r in _saved(state, ctx, "check hits counted", count)]


def escalation_attacks(config: EvalConfig, adaptive: AdaptiveModel, ran_square: bool) -> list[tuple[Attack, str]]:
    """The adaptive attacks, strongest first, with their roles."""
    how = ", ".join(filter(None, [
        f"BPDA {' '.join(adaptive.bpda)}" if adaptive.bpda else "",
        f"EOT x{adaptive.eot_samples}" if adaptive.eot_samples else "",
    ])) or "plain gradients"
    steps, restarts = 2 * config.steps, 2 * config.restarts
    attacks: list[tuple[Attack, str]] = []
    if adaptive.adapted:
        attacks.append((FGSM(loss=config.loss), f"escalation: {how}"))
        attacks.append((PGD(steps=steps, n_restarts=config.restarts, loss="ce"), f"escalation: {how}"))
    attacks.append((PGD(steps=steps, n_restarts=restarts, loss="cw"),
                    f"escalation: {how}, margin loss, {restarts} restarts"))
    if adaptive.eot_samples or not ran_square:
        attacks.append((Square(n_queries=5 * config.blackbox_queries), "escalation: gradient-free"
                        + (f", EOT x{adaptive.eot_samples}" if adaptive.eot_samples else "")))
    return attacks


def run_escalation(ctx: EvalContext, config: EvalConfig, state: StageState, audit: Audit,
                   ran_square: bool) -> None:
    """Attack the points still robust with the adaptive attacks; their records join the cascade."""
    random = any(f.fired for f in audit.findings if f.check == "randomness")
    adaptive = adaptive_model(ctx.model, eot_samples=config.eot_samples, random=random)
    audit.adaptive = adaptive
    plan: list[tuple[Attack, str, nn.Module]] = [(a, r, adaptive.module) for a, r in
                                                 escalation_attacks(config, adaptive, ran_square)]
    surrogate, audit.surrogate = surrogate_of(ctx.model, config, ctx.device)
    if surrogate is not None:
        transfer = Transfer(surrogate=surrogate, steps=2 * config.steps, diversity=0.5, loss="ce")
        plan.insert(len(plan) - 1 if plan[-1][0].name == "square" else len(plan),
                    (transfer, f"escalation: transfer from {audit.surrogate} (MI-FGSM, input diversity)", ctx.model))
    for i, (attack, role, model) in enumerate(plan):
        name = f"escalation {i} {attack.name}"
        if name not in state.done:
            if not bool(ctx.robust.any()):
                break  # nothing left to break: the remaining attacks would attack no point
            state.save(name, asdict(attack_stage(ctx, attack, role, _STREAM + 100 + i, model=model)), ctx)
        audit.records.append(AttackRecord(**state.done[name]))


def build_verdict(audit: Audit, robust: float, flattering: float, model: nn.Module) -> Verdict:
    """The verdict section: findings with what was run about each, both robust accuracies, the defenses."""
    adaptive = audit.adaptive.describe() if audit.adaptive is not None else {}
    if audit.surrogate is not None:
        adaptive["surrogate"] = audit.surrogate
    return Verdict(
        verdict=masking.decide(audit.findings, flattering, robust),
        findings=[_with_action(f, audit) for f in audit.findings],
        escalated=audit.escalated,
        robust_accuracy=robust,
        flattering_accuracy=flattering,
        adaptive=adaptive,
        defenses=[d.describe() for d in find_defenses(model)],
    )


def _with_action(finding: Finding, audit: Audit) -> Finding:
    if not finding.fired or finding.action:
        return finding
    if not audit.escalated:
        return replace(finding, action="reported")
    ran = [r for r in audit.records if r.role.startswith("escalation")]
    names = ", ".join(dict.fromkeys(r.name for r in ran)) or "adaptive attacks"
    adaptive = audit.adaptive
    how = ", ".join(filter(None, [f"BPDA {' '.join(adaptive.bpda)}" if adaptive and adaptive.bpda else "",
                                  f"EOT x{adaptive.eot_samples}" if adaptive and adaptive.eot_samples else ""]))
    return replace(finding, action=f"escalated: {names}" + (f" ({how})" if how else ""))


def curve_settings(attack: Attack, audit: Audit) -> dict[str, Any]:
    """The curve attack's settings, and the adaptive view it attacked after an escalation."""
    settings: dict[str, Any] = {"attack": attack.name, **attack.settings()}
    if audit.adaptive is not None and audit.adaptive.adapted:
        settings["adaptive"] = audit.adaptive.describe()
    return settings
