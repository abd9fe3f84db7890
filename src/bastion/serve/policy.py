"""The per-request decision: accept, flag, fall back or reject, with the reason in one line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bastion.serve.config import GuardSettings

__all__ = ["ABSTAIN", "Decision", "Policy"]

#: The label of an abstention (no class is answered).
ABSTAIN = -1

Outcome = Literal["accept", "flag", "fallback", "reject"]


@dataclass(frozen=True)
class Decision:
    """What the policy answers for one input.

    Attributes:
        outcome: "accept", "flag" (answer plus warning), "fallback" (the safe answer), "reject".
        label: The label answered: the model's, the fallback's (`ABSTAIN` = -1 for an abstention),
            or None when rejected.
        reason: One line saying why.
        flagged_by: The detectors whose p-value fell to the flag level.
        smooth: True when the answer is the smoothed prediction: the guard computes it for these
            inputs only and decides again with it.
    """

    outcome: Outcome
    label: int | None
    reason: str
    flagged_by: tuple[str, ...]
    smooth: bool = False


@dataclass(frozen=True)
class Policy:
    """Turn p-values into a decision.

    A detector flags when its p-value is <= `flag_level` (the target FPR over the number of
    detectors), and demands rejection when it is <= `reject_level`. Flagged inputs get what
    `settings.on_flag` says; rejection wins over everything. While the guarantee no longer holds
    (`drifted`), every input, flagged or not, gets what `settings.on_drift` says ("keep": decide as
    usual, "flag", "fallback" or "reject"): the flag rate promised no longer bounds anything.

    Args:
        settings: The guard's settings (on_flag, fallback).
        flag_level: Per-detector p-value level of a flag.
        reject_level: Per-detector p-value level of a rejection, or None for no such level.
    """

    settings: GuardSettings
    flag_level: float
    reject_level: float | None = None

    def decide(self, model_label: int, p_values: dict[str, float], smoothed_label: int | None = None, *,
               drifted: bool = False) -> Decision:
        """The decision for one input from its detectors' p-values (and smoothed label, if computed).

        A fallback to the smoothed prediction without `smoothed_label` comes back with `smooth` set
        (label ABSTAIN until the guard decides again with the smoothed label).
        """
        flagged = tuple(name for name, p in p_values.items() if p <= self.flag_level)
        acting = drifted and self.settings.on_drift != "keep"
        if not flagged and not acting:
            return Decision("accept", model_label, "no detector flagged the input", ())
        worst = min(p_values, key=lambda name: p_values[name])
        if flagged and self.reject_level is not None and p_values[worst] <= self.reject_level:
            return Decision("reject", None, f"{worst} p={p_values[worst]:.4g} <= reject level "
                            f"{self.reject_level:.4g}", flagged)
        why = f"{worst} p={p_values[worst]:.4g} <= {self.flag_level:.4g}" if flagged else "no detector flagged"
        action: str = self.settings.on_flag
        if acting:
            action = self.settings.on_drift
            why = f"the guarantee no longer holds ({why}); policy on drift: {action}"
        if action == "reject":
            return Decision("reject", None, f"{why}; rejected", flagged)
        if action == "flag":
            return Decision("flag", model_label, f"{why}; answered with a warning", flagged)
        fallback = self.settings.fallback
        if fallback == "smooth":
            label = ABSTAIN if smoothed_label is None else smoothed_label
            kind = "smoothed prediction (abstains)" if label == ABSTAIN else "smoothed prediction"
            return Decision("fallback", label, f"{why}; fallback: {kind}", flagged, smooth=smoothed_label is None)
        if fallback.startswith("label:"):
            return Decision("fallback", int(fallback.split(":", 1)[1]), f"{why}; fallback: {fallback}", flagged)
        return Decision("fallback", ABSTAIN, f"{why}; fallback: abstain", flagged)
