"""One attack of the cascade as a stage: it attacks only the points still robust, and breaks what it can."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import nn

from bastion.attacks import ATTACKS, Attack
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag, positive
from bastion.evaluate.records import AttackKind, AttackRecord, parse_kind
from bastion.evaluate.shards import sum_over_processes
from bastion.evaluate.shrink import shrunk_radius
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.clean import mean_of
from bastion.evaluate.stages.probes import ProbesResult
from bastion.evaluate.stages.views import adaptive_view, view_text
from bastion.evaluate.validation import check_int
from bastion.losses import LOSSES
from bastion.passes import measuring

__all__ = ["AttackSettings", "AttackStage", "AttackStageResult", "attack_stage"]


@dataclass(frozen=True)
class AttackSettings:
    """Which attack, with which hyperparameters, in which role and of which kind.

    Attributes:
        attack: Key into `bastion.attacks.ATTACKS` ("fgsm", "pgd", "apgd-t", ...).
        params: The attack's constructor arguments; unset ones keep the attack's defaults.
        role: Why it runs, shown in the report ("main attack", "autoattack standard", ...).
        kind: What its row of the attack table is (`AttackKind`, or its value), read by the verdict.
        adaptive: When the `probes` stage found a random model or shattered gradients, attack the
            adaptive view (BPDA, straight-through gradients, EOT over `eot_samples` draws) instead
            of the plain model, whose gradients cannot guide the attack.
    """

    attack: str = "pgd"
    params: dict[str, Any] = field(default_factory=dict)
    role: str = "attack"
    kind: AttackKind = AttackKind.ATTACK
    adaptive: bool = False
    eot_samples: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_kind(self.kind))  # a TOML table gives the kind's value
        check_int("eot_samples", self.eot_samples, 1)
        if self.attack not in ATTACKS:
            raise InputError(f"unknown attack {self.attack!r}; choose one of: {', '.join(ATTACKS.names())}")
        self.build()

    def build(self) -> Attack:
        """The attack these settings describe."""
        return ATTACKS.create(self.attack, **self.params)


@dataclass(frozen=True)
class AttackStageResult(StageResult):
    """The attack's row of the cascade, and the points it broke (indices into the data)."""

    record: AttackRecord
    broken: list[int]
    view: str = ""  # how the adaptive view it attacked differs from the model (`view_text`); empty: the model

    def attack_records(self) -> list[AttackRecord]:
        """The attack's row."""
        return [self.record]


@STAGES.register("attack")
class AttackStage(Stage):
    """Run a registered attack on the points no earlier attack broke (the cascade of Croce & Hein 2020).

    The robust accuracy after it is the per-sample worst case over it and every attack before it.
    """

    kind = "attack"
    Settings = AttackSettings
    Result = AttackStageResult
    settings: AttackSettings
    #: Read by the suites' attack entries (`Entry.bind`) and by the stages that run attacks of their own.
    flags = (
        Flag("steps", 20, "PGD steps, in the suites that run PGD (pgd, autoattack, extended); apgd-fast takes "
             "--aa-steps", int, minimum=1),
        Flag("restarts", 5, "PGD random restarts, in the suites that run PGD", int, minimum=1),
        Flag("rel_step", None, "PGD step size as a fraction of eps (default 2.5/steps)", float, check=positive,
             expects="be > 0"),
        Flag("loss", "ce", "attack loss: ce, cw (C&W margin) or dlr (Croce & Hein's difference of logits ratio)",
             choices=lambda: list(LOSSES)),
        Flag("fgsm", True, "FGSM sanity check", bool),
        Flag("gallery", 8, "adversarial examples the attacks keep for the HTML report's gallery", int, minimum=0),
    )

    def run(self, ctx: EvalContext) -> AttackStageResult:
        """Attack the points still robust at the threat model's eps."""
        s, before = self.settings, ctx.robust.clone()
        probes = ctx.earlier(ProbesResult) if s.adaptive else None
        seen = ""  # how the view this stage attacked differs from the model
        with measuring(ctx.model) as cost:  # the row is the whole stage: its view's probe pass included
            role, view = s.role, None
            if probes is not None and probes.gradients_mislead:
                view = adaptive_view(ctx, s.eot_samples, probes.random)
                seen = view_text(view.describe())
                role = f"{s.role} (probes: gradients mislead; {seen or 'plain gradients'})"
            record = attack_stage(ctx, s.build(), role, model=None if view is None else view.module, kind=s.kind)
        record = replace(record, passes=asdict(sum_over_processes(cost.passes)), seconds=cost.seconds)
        return AttackStageResult(record=record, broken=(before & ~ctx.robust).nonzero().squeeze(1).tolist(), view=seen)

    @classmethod
    def headline(cls, result: AttackStageResult) -> str:
        """Robust accuracy after the attack."""
        r = result.record
        return f"{r.name}: fooled {r.fooled} of {r.attacked}; robust accuracy {r.robust_accuracy:.2%}"


def attack_stage(ctx: EvalContext, attack: Attack, role: str, *, model: nn.Module | None = None,
                 stream: str = "", kind: AttackKind = AttackKind.ATTACK) -> AttackRecord:
    """Run `attack` on the points still robust, and mark those it breaks (the cascade); `kind`: the record's.

    `model` replaces `ctx.model` as what the attack sees (a BPDA or EOT view of it, whose predictions
    are the model's own); None attacks `ctx.model`. `stream` names the random streams within the
    running stage (several attacks in one stage need their own); each chunk of points has its own
    generator of that stream (`Batch.generator`). The record's passes and seconds are all the work's,
    the bisection of `shrunk_radius` included, counted as the runner counts the stage's
    (`bastion.passes.measuring`): through the classifier, so a pass of an EOT view over k draws counts k.
    """
    targets = ctx.robust.nonzero().squeeze(1)
    with measuring(ctx.model) as cost:
        shard = ctx.batches(targets, f"{attack.name} ({role})")
        for batch in shard:
            result = attack(ctx.model if model is None else model, batch.x, batch.y, ctx.threat,
                            generator=batch.generator(stream or attack.name))
            fooled = result.success.cpu()
            broken = batch.indices[fooled]
            ctx.robust[broken] = False
            if broken.numel() and len(ctx.broken_at):  # robust until now: no radius known for them yet
                rows = fooled.nonzero().squeeze(1).to(batch.x.device)
                ctx.broken_at[broken] = shrunk_radius(ctx.model, batch.x[rows], result.x_adv[rows], batch.y[rows],
                                                      ctx.threat.norm)
            ctx.keep_examples(batch.indices, batch.x, result.x_adv, batch.y, result.predictions, fooled, attack.name)
        shard.merge(ctx.broken_at)
    fooled_total = int(targets.numel()) - int(ctx.robust[targets].sum())
    return AttackRecord(name=attack.name, role=role, kind=kind, settings=attack.settings(), norm=ctx.threat.norm.name,
                        eps=ctx.threat.eps, attacked=int(targets.numel()), fooled=fooled_total,
                        robust_accuracy=mean_of(ctx.robust), passes=asdict(sum_over_processes(cost.passes)),
                        seconds=cost.seconds, stage=ctx.stage)
