"""The gradient-masking checks: the tell-tale signs that the attacks, not the model, failed.

They follow the checklists of Athalye, Carlini & Wagner (ICML 2018, arXiv:1802.00420, section 3.1),
Carlini et al. ("On Evaluating Adversarial Robustness", 2019, arXiv:1902.06705, section 5) and
Pintor et al. ("Indicators of Attack Failure", NeurIPS 2022, arXiv:2106.09947). Each returns a
`Finding`; `decide` turns the findings and the escalation's outcome into the verdict.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bastion.attacks.base import Attack
from bastion.evaluate.context import EvalContext
from bastion.evaluate.result import AttackRecord, CurvePoint, Finding
from bastion.losses import cross_entropy, cw_margin
from bastion.passes import attack_mode
from bastion.threat import ThreatModel

__all__ = [
    "PLATEAU_DROP",
    "SWING",
    "blackbox_finding",
    "decide",
    "fgsm_finding",
    "gradient_findings",
    "large_eps_finding",
    "output_findings",
    "plateau_finding",
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


def plateau_finding(curve: list[CurvePoint], eps: float) -> Finding:
    """Accuracy not decreasing at all with eps beyond the threat model's (a flat plateau far above zero).

    A model trained at a larger eps than the one evaluated rightly holds most of its accuracy up to
    twice the eps (an eps-0.3 model evaluated at 0.1 loses a few points by 0.2), so a slow fall is no
    sign of masking; whether the attack can reach zero is the large-eps check's question, asked at
    the radius that covers the whole box. What a failing attack draws is a curve that loses no point
    at all beyond eps: it fires when the accuracy at the largest radius is above 5% and within
    `PLATEAU_DROP` of the accuracy at eps.
    """
    title = "accuracy does not decrease with eps"
    at_eps = next((p.accuracy for p in curve if abs(p.eps - eps) <= 1e-9), None)
    if not curve or at_eps is None or curve[-1].eps <= eps:
        return Finding("plateau", title, False, "suspicious", "no curve point beyond the threat model's eps")
    largest = curve[-1]
    fired = largest.accuracy > 0.05 and at_eps - largest.accuracy < PLATEAU_DROP
    return Finding("plateau", title, fired, "suspicious",
                   f"{at_eps:.1%} at eps={eps:.4g}, {largest.accuracy:.1%} at eps={largest.eps:.4g}")


#: Fall in accuracy from eps to the curve's largest radius under which the curve counts as flat.
PLATEAU_DROP = 0.01


def decide(findings: list[Finding], flattering: float, robust: float) -> str:
    """The verdict: "reliable", "suspicious" or "broken".

    "reliable" when nothing fired; "broken" when a sign of severity "broken" fired or escalation
    lowered the robust accuracy by more than `SWING`; "suspicious" otherwise.
    """
    fired = [f for f in findings if f.fired]
    if flattering - robust > SWING or any(f.severity == "broken" for f in fired):
        return "broken"
    return "suspicious" if fired else "reliable"
