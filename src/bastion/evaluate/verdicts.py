"""Plain-language warnings about what the numbers of an evaluation mean, or fail to mean."""

from __future__ import annotations

from bastion.evaluate.result import AttackRecord, CurvePoint

__all__ = ["protocol_warnings"]


def protocol_warnings(
    clean_accuracy: float, attacks: list[AttackRecord], curve: list[CurvePoint], eps: float
) -> list[str]:
    """Warnings from the protocol's tell-tale signs (Carlini et al. 2019, arXiv:1902.06705, section 5).

    - FGSM alone breaks most correctly classified points: no robustness to speak of.
    - The curve does not fall towards zero at large eps (a plateau): the attack, not the model,
      may have failed, a sign of gradient masking.
    """
    warnings: list[str] = []
    fgsm = next((a for a in attacks if a.name == "fgsm"), None)
    if fgsm is not None and clean_accuracy > 0 and fgsm.robust_accuracy < 0.5 * clean_accuracy:
        warnings.append(
            f"FGSM alone lowers accuracy from {clean_accuracy:.1%} to {fgsm.robust_accuracy:.1%} at eps={eps:.4g}: "
            "the model has no meaningful robustness in this threat model and needs adversarial training; "
            "stronger attacks only confirm it"
        )
    at_eps = next((p.accuracy for p in curve if abs(p.eps - eps) <= 1e-9), None)
    if curve and at_eps is not None and curve[-1].eps > eps:
        largest = curve[-1]
        if largest.accuracy > 0.05 and largest.accuracy >= 0.8 * at_eps:
            warnings.append(
                f"robust accuracy barely falls beyond the threat model's eps ({at_eps:.1%} at {eps:.4g}, "
                f"{largest.accuracy:.1%} at {largest.eps:.4g}): a plateau far above zero suggests the attack "
                "is failing (gradient masking); check with more steps, restarts and gradient-free attacks"
            )
    return warnings
