"""The cheap probes first: is the model random, does it return probabilities, are its input gradients usable?

A few forward and backward passes on a probe of correctly classified points answer what decides
which attacks can work at all (Carlini et al. 2019, arXiv:1902.06705, section 5; Athalye, Carlini &
Wagner, ICML 2018, arXiv:1802.00420): a random model needs EOT, shattered (zero or NaN) gradients
need BPDA or straight-through gradients, a saturated softmax needs a margin loss. Run before the
attacks (the `fast` suite), they let an attack stage with `adaptive` go straight to the view that
works instead of spending its budget on gradients that cannot; the `checks` stage reuses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.evaluate import masking
from bastion.evaluate.context import EvalContext
from bastion.evaluate.result import Finding
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.validation import check_int

__all__ = ["GRADIENT_BLOCKERS", "ProbesResult", "ProbesSettings", "ProbesStage", "gradient_evidence"]

#: The probes whose firing means plain input gradients mislead an attack.
GRADIENT_BLOCKERS = ("randomness", "zero-gradients")


@dataclass(frozen=True)
class ProbesSettings:
    """Attributes: probe_points: correctly classified points the probes run on."""

    probe_points: int = 64

    def __post_init__(self) -> None:
        check_int("probe_points", self.probe_points, 1)


@dataclass(frozen=True)
class ProbesResult(StageResult):
    """The probes' findings (randomness, probabilities, zero gradients, vanishing gradients)."""

    findings: list[Finding]

    @property
    def random(self) -> bool:
        """Whether identical inputs gave different outputs."""
        return gradient_evidence(self.findings)[0]

    @property
    def gradients_mislead(self) -> bool:
        """Whether plain gradient attacks cannot work: a random model, or shattered gradients."""
        return gradient_evidence(self.findings)[1]


def gradient_evidence(findings: list[Finding]) -> tuple[bool, bool]:
    """(a random model, plain gradients mislead) by the probes' findings among `findings`."""
    fired = {f.check for f in findings if f.fired}
    return "randomness" in fired, bool(fired & set(GRADIENT_BLOCKERS))


@STAGES.register("probes")
class ProbesStage(Stage):
    """Probe outputs and input gradients on a few points, before any attack."""

    kind = "probes"
    Settings = ProbesSettings
    Result = ProbesResult
    settings: ProbesSettings

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The checks' `probe_points`."""
        return {"probe_points": options["probe_points"]}

    def run(self, ctx: EvalContext) -> ProbesResult:
        """Two calls on identical inputs, and margin and cross-entropy input gradients."""
        n = self.settings.probe_points
        return ProbesResult(findings=masking.output_findings(ctx, n) + masking.gradient_findings(ctx, n))

    @classmethod
    def headline(cls, result: ProbesResult) -> str:
        """The probes that fired, and what follows."""
        fired = [f.check for f in result.findings if f.fired]
        if not fired:
            return f"outputs and gradients look usable ({len(result.findings)} probes)"
        then = "; gradient attacks go through the adaptive view" if result.gradients_mislead else ""
        return f"{', '.join(fired)} fired{then}"
