"""Escalation: where a masking check fired (or with `adaptive`), attack the model as its defenses say to.

It also counts, after its own attacks, the points the checks' black-box and transfer attacks broke that every
attack missed (a row per check, of kind `MASKING_CHECK`), so those adversarial examples are never ignored.

Kerckhoffs' rule applied to robustness (Athalye, Carlini & Wagner, ICML 2018, arXiv:1802.00420): the attacker
knows the defense. BPDA through the non-differentiable defenses, EOT over the random ones, a margin loss with
more restarts, a transfer attack from a surrogate, and the gradient-free Square attack (Andriushchenko et al.,
ECCV 2020) run on the points still robust (rows of kind `ESCALATION`); the escalated robust accuracy becomes
the evaluation's number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import nn

from bastion.attacks import FGSM, PGD, Attack, Square, Transfer
from bastion.defenses import AdaptiveModel
from bastion.evaluate.context import EvalContext
from bastion.evaluate.distilled import distill_surrogate
from bastion.evaluate.flags import Flag
from bastion.evaluate.records import AttackKind, AttackRecord, Finding
from bastion.evaluate.shards import counted_once
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.attack import AttackStageResult, attack_stage
from bastion.evaluate.stages.checks import ChecksResult, count_check_hits
from bastion.evaluate.stages.costs import charged, with_overhead
from bastion.evaluate.stages.probes import gradient_evidence
from bastion.evaluate.stages.views import adaptive_view, query_view, view_text
from bastion.evaluate.surrogates import surrogate_of
from bastion.evaluate.validation import check_int, check_loss
from bastion.passes import measuring

__all__ = ["EscalationResult", "EscalationSettings", "EscalationStage", "escalate", "view_text"]

@dataclass(frozen=True)
class EscalationSettings:
    """What the adaptive attacks run with.

    Attributes: `adaptive` runs the adaptive attacks even when no check fired; `square_restarts`: Square runs
    again, with new random draws, while its last run broke a point, at most this many times in all; `distill`:
    with no surrogate to transfer from and cut input gradients, distill one from the model's predictions
    (`bastion.evaluate.distilled`); `square_queries`: Square's budget when the input gradients are cut (zero
    or vanishing), where it is the attack that works, as in AutoAttack (else 5 x `blackbox_queries`, the
    budget of its restarts); the rest as the flags of their names (`EscalationStage.flags`, `AttackStage.flags`, ...).
    """

    adaptive: bool = False
    eot_samples: int = 10
    steps: int = 20
    restarts: int = 5
    loss: str = "ce"
    blackbox_queries: int = 200
    surrogate: str | None = None
    surrogate_weights: str | None = None
    square_restarts: int = 3
    square_queries: int = 5000
    distill: bool = True

    def __post_init__(self) -> None:
        for name in ("eot_samples", "steps", "restarts", "blackbox_queries", "square_restarts", "square_queries"):
            check_int(name, getattr(self, name), 1)
        check_loss(self.loss)


@dataclass(frozen=True)
class EscalationResult(StageResult):
    """Whether the adaptive attacks ran and why, their rows of the cascade, and the view they attacked."""

    ran: bool
    reason: str
    records: list[AttackRecord] = field(default_factory=list)
    adaptive: dict[str, Any] = field(default_factory=dict)
    random: bool = False
    surrogate: str | None = None
    surrogate_weights: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def attack_records(self) -> list[AttackRecord]:
        """Its adaptive attacks' rows, the rows of the points the checks broke, and its overhead's."""
        return list(self.records)


@STAGES.register("escalation")
class EscalationStage(Stage):
    """Run the adaptive attacks when a check of the `checks` stage fired, or always with `adaptive`."""

    kind = "escalation"
    Settings = EscalationSettings
    Result = EscalationResult
    settings: EscalationSettings
    flags = (
        Flag("adaptive", False, "run the adaptive attacks (BPDA, EOT, transfer, Square) even if no gradient-masking "
             "check fires", bool),
        Flag("surrogate", None, "surrogate model spec for transfer attacks (without one, a defended model's "
             "undefended network)", metavar="MODEL"),
        Flag("surrogate_weights", None, "state dict of a factory-built --surrogate (with an .onnx --model, "
             "--weights is taken as the surrogate's)", metavar="FILE"),
        Flag("eot_samples", 10, "draws per EOT gradient for randomized models", int, minimum=1),
    )

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The adaptive attacks' budgets; Square's takes AutoAttack's when one is given."""
        names = ("adaptive", "eot_samples", "steps", "restarts", "loss", "blackbox_queries", "surrogate",
                 "surrogate_weights")
        return {**{name: options[name] for name in names}, "square_queries": options["aa_queries"]}

    def run(self, ctx: EvalContext) -> EscalationResult:
        """Escalate, or record why not."""
        checks = ctx.earlier(ChecksResult)
        findings = checks.findings if checks is not None else []
        fired = [f.check for f in findings if f.fired]
        with measuring(ctx.model) as cost:
            if not (fired or self.settings.adaptive):
                result = EscalationResult(ran=False, reason="no check fired", settings=asdict(self.settings))
            else:
                reason = f"checks fired: {', '.join(fired)}" if fired else "--adaptive"
                result = escalate(ctx, self.settings, findings, reason)
            hits = count_check_hits(ctx, checks.hits) if checks is not None else []
        records = with_overhead(ctx, [*result.records, *hits], cost,
                                "the adaptive view's probe pass, a surrogate no attack used")
        return replace(result, records=records)

    @classmethod
    def headline(cls, result: EscalationResult) -> str:
        """What ran, and the robust accuracy after it."""
        counted = [r for r in result.records if r.kind is AttackKind.MASKING_CHECK]
        extra = f"; {sum(r.fooled for r in counted)} point(s) the checks broke counted" if counted else ""
        if not result.ran:
            return f"not needed ({result.reason}){extra}"
        ran = [r for r in result.records if r.kind is AttackKind.ESCALATION]
        after = f"; robust accuracy {ran[-1].robust_accuracy:.2%}" if ran else ""
        return f"{len(ran)} adaptive attack(s) ({result.reason}){after}{extra}"


def escalate(ctx: EvalContext, settings: EscalationSettings, findings: list[Finding], reason: str,
             stream: str = "") -> EscalationResult:
    """Attack the points still robust with the adaptive attacks, strongest first; their rows join the cascade."""
    random = gradient_evidence(findings)[0]
    adaptive = adaptive_view(ctx, settings.eot_samples, random)
    earlier = ctx.all_earlier(AttackStageResult)
    ran_square = any(r.record.name == "square" for r in earlier)
    how = view_text(adaptive.describe())
    attacked_view = bool(how) and any(r.view == how for r in earlier)
    cut = any(f.fired for f in findings if f.check in ("zero-gradients", "vanishing-gradients"))
    plan: list[tuple[Attack, str, nn.Module]] = [
        (a, role, query_view(a, adaptive.module, ctx.model, random))
        for a, role in _attacks(settings, adaptive, ran_square, attacked_view, cut)]
    with measuring(ctx.model) as making:  # the surrogate's cost is the transfer attack's
        surrogate, described = surrogate_of(ctx.model, settings.surrogate, ctx.device, settings.surrogate_weights)
        if surrogate is None and settings.distill and cut and bool(ctx.robust.any()):  # none: nothing to attack
            with counted_once():  # every process distills alike
                surrogate, described = distill_surrogate(ctx), "a CNN distilled from the model's predictions"
    if surrogate is not None:
        transfer = Transfer(surrogate=surrogate, steps=2 * settings.steps, diversity=0.5, loss="ce")
        at = len(plan) - 1 if plan and plan[-1][0].name == "square" else len(plan)
        plan.insert(at, (transfer, f"escalation: transfer from {described} (MI-FGSM, input diversity)", ctx.model))
    records, kind = [], AttackKind.ESCALATION  # the kind of every row of the plan
    for i, (attack, role, model) in enumerate(plan):
        if not bool(ctx.robust.any()):
            break  # nothing left to break: the remaining attacks would attack no point
        records.append(attack_stage(ctx, attack, role, model=model, stream=f"{stream}{i}-{attack.name}", kind=kind))
        if attack.name == "transfer":
            records[-1] = charged(records[-1], making)
        if attack.name != "square":
            continue
        again = Square(n_queries=5 * settings.blackbox_queries)  # restarts at the checks' budget
        for run in range(1, settings.square_restarts):
            if not (records[-1].fooled and bool(ctx.robust.any())):
                break  # a random search that still finds points may find more; one that found none stops
            records.append(attack_stage(ctx, again, f"{role}, {again.n_queries} queries, restart {run}",
                                        model=model, stream=f"{stream}{i}-{attack.name}-{run}", kind=kind))
    return EscalationResult(ran=True, reason=reason, records=records, adaptive=adaptive.describe(), random=random,
                            surrogate=described, settings=asdict(settings))


def _attacks(s: EscalationSettings, adaptive: AdaptiveModel, ran_square: bool, attacked_view: bool,
             cut: bool) -> list[tuple[Attack, str]]:
    """The adaptive attacks, strongest first, with their roles.

    No gradient attack when an earlier attack stage already went through this very view (the fast
    suite's `apgd-fast` after the probes: margin APGD, stronger than PGD through the same gradients).
    """
    how = view_text(adaptive.describe()) or "plain gradients"
    steps, restarts = 2 * s.steps, 2 * s.restarts
    attacks: list[tuple[Attack, str]] = []
    if adaptive.adapted and not attacked_view:
        attacks.append((FGSM(loss=s.loss), f"escalation: {how}"))
        attacks.append((PGD(steps=steps, n_restarts=s.restarts, loss="ce"), f"escalation: {how}"))
    if not attacked_view:
        attacks.append((PGD(steps=steps, n_restarts=restarts, loss="cw"),
                        f"escalation: {how}, margin loss, {restarts} restarts"))
    if adaptive.eot_samples or not ran_square:
        queries = s.square_queries if cut else 5 * s.blackbox_queries
        attacks.append((Square(n_queries=queries), "escalation: gradient-free"
                        + (f", EOT x{adaptive.eot_samples}" if adaptive.eot_samples else "")))
    return attacks
