"""Plain-language warnings about what the numbers of an evaluation mean, or fail to mean."""

from __future__ import annotations

from bastion.evaluate.result import AttackRecord

__all__ = ["protocol_warnings"]


def protocol_warnings(clean_accuracy: float, attacks: list[AttackRecord], eps: float) -> list[str]:
    """Warnings from the protocol's tell-tale signs (Carlini et al. 2019, arXiv:1902.06705, section 5).

    - FGSM alone breaks most correctly classified points: no robustness to speak of.

    Whether the curve's shape says the attack failed is the verdict's question, asked against
    evidence (`masking.curve_evidence_finding`): a curve that barely falls beyond eps is what an
    honest model trained at a larger eps draws.
    """
    warnings: list[str] = []
    fgsm = next((a for a in attacks if a.name == "fgsm"), None)
    if fgsm is not None and clean_accuracy > 0 and fgsm.robust_accuracy < 0.5 * clean_accuracy:
        warnings.append(
            f"FGSM alone lowers accuracy from {clean_accuracy:.1%} to {fgsm.robust_accuracy:.1%} at eps={eps:.4g}: "
            "the model has no meaningful robustness in this threat model and needs adversarial training; "
            "stronger attacks only confirm it"
        )
    return warnings
