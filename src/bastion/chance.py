"""Chance level: when a classifier's accuracy says it has learned nothing, so no number about it means anything.

A classifier that guesses (or predicts one class) scores about 1 / num_classes. Below that level,
robust accuracy is trivially low and an evaluation of it measures nothing (Carlini et al. 2019,
arXiv:1902.06705, section 4.1: first check the clean accuracy of the model under test). Training
(`bastion.train.card`) and evaluation (`bastion.evaluate.verdicts`) share this one rule.
"""

from __future__ import annotations

__all__ = ["MIN_POINTS", "chance_accuracy", "chance_margin", "near_chance"]

#: Fewest points on which a chance-level accuracy is called one: on fewer, a trained model can miss them all by luck.
MIN_POINTS = 10


def chance_accuracy(num_classes: int) -> float:
    """The accuracy of guessing uniformly (or predicting one class on balanced data): 1 / num_classes."""
    return 1.0 / max(1, num_classes)


def chance_margin(num_classes: int) -> float:
    """How far above chance an accuracy still counts as chance: 5 points, or half of chance when that is more."""
    return max(0.05, 0.5 * chance_accuracy(num_classes))


def near_chance(accuracy: float, num_classes: int, n: int | None = None) -> bool:
    """Whether `accuracy` is at or below chance (within `chance_margin`) on enough points to say so.

    Args:
        accuracy: Clean accuracy in [0, 1].
        num_classes: Classes of the data.
        n: Points the accuracy was measured on; None when not known (then the accuracy alone decides).
            With fewer than `MIN_POINTS` points nothing is said: a trained model at 99% misses 3 of 3
            points once in a million runs, but a 60% model misses 3 of 3 in 6%.

    Example:
        >>> near_chance(0.1, 10, 200), near_chance(0.9, 10, 200), near_chance(0.0, 10, 3)
        (True, False, False)
    """
    if n is not None and n < MIN_POINTS:
        return False
    return accuracy <= chance_accuracy(num_classes) + chance_margin(num_classes)
