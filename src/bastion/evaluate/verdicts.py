"""Plain-language warnings about what the numbers of an evaluation mean, or fail to mean."""

from __future__ import annotations

from bastion.certify.smoothing import clopper_pearson_lower
from bastion.chance import chance_accuracy, chance_margin, near_chance
from bastion.evaluate.records import AttackKind, AttackRecord, Finding

__all__ = ["MEANINGLESS", "chance_finding", "protocol_warnings", "unweighted_factory_warning"]

#: The verdict of an evaluation of a model at chance: no number of it says anything about robustness.
MEANINGLESS = "meaningless"


def protocol_warnings(clean_accuracy: float, attacks: list[AttackRecord], eps: float) -> list[str]:
    """Warnings from the protocol's tell-tale signs (Carlini et al. 2019, arXiv:1902.06705, section 5).

    - The sanity check (FGSM: the row of kind `SANITY`) alone breaks most correctly classified
      points: no robustness to speak of.

    Whether the curve's shape says the attack failed is the verdict's question, asked against
    evidence (`masking.curve_evidence_finding`): a curve that barely falls beyond eps is what an
    honest model trained at a larger eps draws.
    """
    warnings: list[str] = []
    sanity = next((a for a in attacks if a.kind is AttackKind.SANITY), None)
    if sanity is not None and clean_accuracy > 0 and sanity.robust_accuracy < 0.5 * clean_accuracy:
        warnings.append(
            f"{sanity.name.upper()} alone lowers accuracy from {clean_accuracy:.1%} to {sanity.robust_accuracy:.1%} "
            f"at eps={eps:.4g}: "
            "the model has no meaningful robustness in this threat model and needs adversarial training; "
            "stronger attacks only confirm it"
        )
    return warnings


def chance_finding(correct: int, n: int, num_classes: int, *, unweighted: bool = False) -> Finding | None:
    """A fired finding when the clean accuracy says the model learned nothing, else None.

    Such a model (untrained, or with the wrong weights, normalization or labels) has a low robust
    accuracy whatever the attack does: its evaluation is meaningless, however cleanly every check
    passes (Carlini et al. 2019, arXiv:1902.06705, section 4.1: check the model's clean accuracy).

    Args:
        correct: Points classified correctly without attack.
        n: Points evaluated.
        num_classes: Classes of the data.
        unweighted: The model is a factory's, built without --weights. Then the bar is the evidence
            that it learned: the finding fires unless the 95% Clopper-Pearson lower bound of its
            accuracy clears chance (`bastion.chance.chance_margin` above it). Otherwise it fires
            when the accuracy itself is at chance on enough points (`bastion.chance.near_chance`).
    """
    if n < 1:
        return None
    chance, accuracy = chance_accuracy(num_classes), correct / n
    lower = clopper_pearson_lower(correct, n, 0.05)
    if near_chance(accuracy, num_classes, n):
        detail = f"clean accuracy {accuracy:.1%} on {n} points; chance is {chance:.1%} with {num_classes} classes"
    elif unweighted and lower <= chance + chance_margin(num_classes):
        detail = (f"clean accuracy {accuracy:.1%} on {n} points (95% lower bound {lower:.1%}) is not clearly above "
                  f"chance ({chance:.1%} with {num_classes} classes), and the factory ran without --weights")
    else:
        return None
    return Finding(
        "chance-level", "clean accuracy at chance: the model has learned nothing", True, MEANINGLESS, detail,
        "reported: the model is untrained, or its weights, normalization (--mean/--std) or labels are wrong; "
        "no robustness number of it means anything",
    )


def unweighted_factory_warning(spec: str) -> str:
    """The warning of a model a factory built without --weights: its weights are the factory's initial ones."""
    return (f"{spec} was built by its factory without --weights: unless the factory loads trained weights itself, "
            "the model is untrained and its numbers mean nothing; give --weights FILE (a state dict)")
