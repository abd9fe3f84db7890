"""The gradient-masking checks: the tell-tale signs that the attacks, not the model, failed.

They follow the checklists of Athalye, Carlini & Wagner (ICML 2018, arXiv:1802.00420, section 3.1),
Carlini et al. ("On Evaluating Adversarial Robustness", 2019, arXiv:1902.06705, section 5) and
Pintor et al. ("Indicators of Attack Failure", NeurIPS 2022, arXiv:2106.09947). Each returns a
`Finding`; `decide` turns the findings and the escalation's outcome into the verdict.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bastion.attacks.base import Attack
from bastion.evaluate.context import EvalContext
from bastion.evaluate.result import AttackRecord, CurvePoint, Finding
from bastion.losses import cross_entropy, cw_margin
from bastion.passes import attack_mode
from bastion.threat import ThreatModel

__all__ = [
    "SWING",
    "audit_finding",
    "blackbox_finding",
    "curve_evidence_finding",
    "decide",
    "fgsm_finding",
    "gradient_findings",
    "large_eps_finding",
    "output_findings",
]

#: An escalation that lowers robust accuracy by more than this (absolute) makes the verdict "broken".
SWING = 0.05


def _probe(ctx: EvalContext, mask: Tensor, limit: int) -> Tensor:
    return mask.nonzero().squeeze(1)[:limit]


def _survivors(ctx: EvalContext, indices: Tensor, attack: Attack, threat: ThreatModel, stream: str,
               description: str) -> Tensor:
    """Which of `indices` survive `attack` run alone (a mask aligned with `indices`), shared among processes."""
    survived = torch.zeros(len(ctx.data), dtype=torch.bool)
    shard = ctx.batches(indices, description)
    for batch in shard:
        result = attack(ctx.model, batch.x, batch.y, threat, generator=batch.generator(stream))
        survived[batch.indices] = ~result.success.cpu()
    shard.merge(survived)
    return survived[indices]


def output_findings(ctx: EvalContext, limit: int) -> list[Finding]:
    """Predictions that differ between identical calls; probabilities returned instead of logits."""
    indices = _probe(ctx, ctx.correct, min(limit, ctx.batch_size))
    random_title = "different predictions from identical calls (a randomized model)"
    proba_title = "outputs are probabilities, not logits"
    if indices.numel() == 0:
        return [Finding("randomness", random_title, False, "suspicious", "no correctly classified point to probe"),
                Finding("probabilities", proba_title, False, "suspicious", "no correctly classified point to probe")]
    with attack_mode(ctx.model), torch.no_grad():
        for batch in ctx.batches(indices, "masking: outputs", replicated=True):  # one chunk: at most batch_size
            x = batch.x
            first, second = ctx.model(x), ctx.model(x)
    changed = float((first.argmax(1) != second.argmax(1)).float().mean())
    differs = not torch.allclose(first, second, rtol=1e-4, atol=1e-5)
    sums = first.sum(1)
    probabilities = bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-2)) and bool(
        ((first >= 0) & (first <= 1)).all()
    )
    return [
        Finding("randomness", random_title, differs, "suspicious",
                f"two calls on {len(x)} identical inputs: outputs {'differ' if differs else 'agree'}, "
                f"{changed:.1%} of the predictions change"),
        Finding("probabilities", proba_title, probabilities, "suspicious",
                "rows of the output are in [0, 1] and sum to 1" if probabilities else "outputs look like logits"),
    ]


def gradient_findings(ctx: EvalContext, limit: int) -> list[Finding]:
    """Zero or non-finite input gradients (shattered), and cross-entropy gradients that vanish (saturated softmax).

    The margin loss max_{j != y} z_j - z_y does not saturate: its gradient is zero only where the
    model's computation is cut (rounding, a codec, quantized outputs). Cross-entropy's gradient
    underflows to exactly zero when the softmax saturates (defensive distillation).
    """
    indices = _probe(ctx, ctx.correct, limit)
    cut = {"margin": torch.zeros(len(ctx.data), dtype=torch.bool), "ce": torch.zeros(len(ctx.data), dtype=torch.bool)}
    shard = ctx.batches(indices, "masking: gradients")
    with attack_mode(ctx.model):
        for batch in shard:
            for name, loss_fn in (("margin", cw_margin), ("ce", cross_entropy)):
                x_var = batch.x.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(loss_fn(ctx.model(x_var), batch.y).sum(), x_var, allow_unused=True)
                norms = torch.zeros(len(batch.x)) if grad is None else grad.flatten(1).norm(dim=1).cpu()
                cut[name][batch.indices] = ~torch.isfinite(norms) | (norms == 0)
    shard.merge(*cut.values())
    dead = {name: int(flags[indices].sum()) for name, flags in cut.items()}
    total = int(indices.numel())
    share = {k: v / total if total else 0.0 for k, v in dead.items()}
    shattered = share["margin"] > 0.1
    saturated = not shattered and share["ce"] > 0.1
    why = (" (not a saturated softmax: the margin-loss gradient is cut too, see the shattered-gradients check)"
           if shattered and share["ce"] > 0.1 else "")
    return [
        Finding("zero-gradients", "zero or NaN input gradients (shattered gradients)", shattered, "broken",
                f"margin-loss input gradient zero or non-finite on {share['margin']:.1%} of {total} points"),
        Finding("vanishing-gradients", "cross-entropy gradients vanish (saturated softmax)", saturated, "broken",
                f"cross-entropy input gradient exactly zero on {share['ce']:.1%} of {total} points, "
                f"margin-loss gradient on {share['margin']:.1%}{why}"),
    ]


def fgsm_finding(ctx: EvalContext, fgsm_broken: Tensor, pgd: Attack, limit: int, stream: str) -> Finding:
    """FGSM stronger than PGD: PGD, run on points FGSM broke, fails on some of them."""
    title = "FGSM stronger than PGD"
    indices = fgsm_broken.nonzero().squeeze(1)[:limit]
    if indices.numel() == 0:
        return Finding("fgsm-stronger", title, False, "suspicious", "FGSM broke no point: nothing to compare")
    survived = _survivors(ctx, indices, pgd, ctx.threat, stream, "masking: fgsm vs pgd")
    failed = int(survived.sum())
    share = failed / indices.numel()
    return Finding("fgsm-stronger", title, failed >= 2 and share > 0.1, "suspicious",
                   f"PGD failed on {failed} of {indices.numel()} points FGSM broke ({share:.1%})")


def large_eps_finding(ctx: EvalContext, attack: Attack, limit: int, stream: str) -> Finding:
    """Accuracy not falling to about zero in a ball as large as the input box (every image is reachable)."""
    threat = ThreatModel.unbounded(ctx.threat.norm, ctx.data.shape, ctx.threat.bounds)
    indices = _probe(ctx, ctx.correct, limit)
    title = "accuracy does not fall to about zero at a very large eps"
    if indices.numel() == 0:
        return Finding("large-eps", title, False, "broken", "no correctly classified point to probe")
    survived = int(_survivors(ctx, indices, attack, threat, stream, "masking: large eps").sum())
    share = survived / indices.numel()
    return Finding("large-eps", title, share > 0.1, "broken",
                   f"{attack.name} at eps={threat.eps:.4g} (the whole box) leaves {share:.1%} of "
                   f"{indices.numel()} correct points robust")


def blackbox_finding(
    ctx: EvalContext, attack: Attack, limit: int, stream: str, kind: str = "black-box", hits: list[int] | None = None
) -> Finding:
    """A black-box (Square) or transfer attack, run alone, beating the white-box cascade on the same points.

    The comparison is of standalone success (Carlini et al. 2019, section 5.2): it fires when the
    attack leaves fewer points robust than every white-box attack together did, by at least three
    points and 5% of them (a weak, few-query Square should never beat the whole white-box cascade).
    The indices of the points it broke that the cascade missed are appended to `hits`: they are
    adversarial examples whether or not the check fires, and the pipeline counts them
    (`count_check_hits`).
    """
    check = "black-box-stronger" if kind == "black-box" else "transfer-stronger"
    title = f"a {kind} attack is stronger than the white-box attacks"
    indices = _probe(ctx, ctx.correct, limit)
    if indices.numel() == 0:
        return Finding(check, title, False, "suspicious", "no correctly classified point to probe")
    survived = _survivors(ctx, indices, attack, ctx.threat, stream, f"masking: {kind}")
    white = ctx.robust[indices]
    n, alone, cascade = len(indices), int(survived.sum()), int(white.sum())
    missed = int((white & ~survived).sum())
    if hits is not None:
        hits += indices[white & ~survived].tolist()
    fired = cascade - alone >= max(3, 0.05 * n)
    return Finding(check, title, fired, "suspicious",
                   f"{attack.name} alone leaves {alone / n:.1%} of {n} correct points robust, the white-box attacks "
                   f"{cascade / n:.1%}; it broke {missed} point(s) they missed")


def cascade_finding(record: AttackRecord | None, n_correct: int) -> Finding:
    """Square, last in AutoAttack's cascade, breaking many points the gradient attacks before it missed."""
    title = "Square breaks many points the gradient-based AutoAttack members missed"
    if record is None:
        return Finding("square-after-gradients", title, False, "suspicious", "Square did not run in the cascade")
    fired = record.fooled >= max(2, 0.05 * n_correct)
    return Finding("square-after-gradients", title, fired, "suspicious",
                   f"square broke {record.fooled} of the {record.attacked} points left robust "
                   f"({record.fooled / max(1, n_correct):.1%} of the correct points)")


def curve_evidence_finding(curve: list[CurvePoint], bounds: list[CurvePoint] | None, source: str) -> Finding:
    """The curve's attack standing above what another attack showed at the same radius.

    Replaces the plateau rule (accuracy that barely falls beyond eps), which fired on honest models
    trained at a larger eps than the one evaluated: such a model rightly holds most of its accuracy
    up to twice the eps. Here the curve is judged against evidence a working attack produces:
    `bounds` are upper bounds on the robust accuracy at each radius from an independent attack (the
    minimal-norm profile, Croce & Hein, ICML 2020, arXiv:1907.02044: a point broken with a
    perturbation of norm <= r is not robust at r). A curve more than `CURVE_SLACK` above such a bound
    at some radius means its attack missed points that lie inside its ball, the failure Carlini et
    al. 2019 (arXiv:1902.06705, section 5.2) ask to look for. Whether the attack reaches zero where
    the ball covers the whole box is the large-eps check's question.
    """
    title = "the curve's attack misses points another attack broke at the same radius"
    if not curve or not bounds:
        return Finding("curve-evidence", title, False, "suspicious",
                       "no independent bound to hold the curve against (a minimal-norm profile: --min-norm)")
    pairs = [(p, b) for p in curve for b in bounds if p.eps > 0 and math.isclose(p.eps, b.eps, rel_tol=1e-6)]
    if not pairs:
        return Finding("curve-evidence", title, False, "suspicious", "the curve and the bound share no radius")
    point, bound = max(pairs, key=lambda pair: pair[0].accuracy - pair[1].accuracy)
    fired = point.accuracy - bound.accuracy > CURVE_SLACK
    return Finding("curve-evidence", title, fired, "suspicious",
                   f"largest gap at eps={point.eps:.4g}: the curve {point.accuracy:.1%}, {source} "
                   f"{bound.accuracy:.1%}")


#: How far the curve may stand above an independent upper bound before its attack counts as failing.
CURVE_SLACK = 0.02


def audit_finding(sampled: int, missed_in_sample: int, closest: int, missed_closest: int,
                  finders: list[str]) -> Finding:
    """The full AutoAttack breaking more of a random sample of the cascade's robust points than chance explains.

    An honest cascade misses a few points AutoAttack would break (within the 0.2-point bar of issue
    13); its misses concentrate near the boundary, which is why the audit adds the boundary-nearest
    points. A miss rate p among the robust points makes k misses in m random ones a binomial draw:
    one miss in 10-30 points is what a 1-3% miss rate gives about a fifth of the time, while
    `max(2, AUDIT_SHARE * m)` misses needs a miss rate near 10%, the mark of a cascade whose
    assumptions failed (masked or randomized gradients). Misses among the boundary-nearest points
    alone never fire: the escalation they cause already corrects the number, and a swing larger than
    `SWING` makes the verdict "broken" by itself.
    """
    title = "AutoAttack breaks a random sample of the points the fast cascade left robust"
    if sampled == 0:
        return Finding("audit", title, False, "suspicious", "no random sample audited")
    fired = missed_in_sample >= max(2, math.ceil(AUDIT_SHARE * sampled))
    by = f" (with {', '.join(finders)})" if finders else ""
    return Finding("audit", title, fired, "suspicious",
                   f"it broke {missed_in_sample} of {sampled} random and {missed_closest} of {closest} "
                   f"boundary-nearest robust points{by}")


#: Share of the audited random sample that AutoAttack must break (with at least two points) to fire.
AUDIT_SHARE = 0.1


def decide(findings: list[Finding], flattering: float, robust: float) -> str:
    """The verdict: "reliable", "suspicious" or "broken".

    "reliable" when nothing fired; "broken" when a sign of severity "broken" fired or escalation
    lowered the robust accuracy by more than `SWING`; "suspicious" otherwise.
    """
    fired = [f for f in findings if f.fired]
    if flattering - robust > SWING or any(f.severity == "broken" for f in fired):
        return "broken"
    return "suspicious" if fired else "reliable"
