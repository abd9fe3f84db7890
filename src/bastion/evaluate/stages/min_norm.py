"""The minimal-norm profile: what a minimal-norm attack (FAB, C&W) tells for free at every radius at once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bastion.attacks import ATTACKS
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag
from bastion.evaluate.stage import STAGES, Stage
from bastion.evaluate.stages.curve_grid import curve_grid
from bastion.evaluate.stages.min_norm_result import MinNormResult, NormBound
from bastion.render.blocks import count, esc, note_html, section_html
from bastion.threat import ThreatModel

__all__ = ["MinNormResult", "MinNormSettings", "MinNormStage", "NormBound", "norm_profile"]


@dataclass(frozen=True)
class MinNormSettings:
    """Attributes: attack: a minimal-norm attack ("fab", "cw"); grid: radii the accuracy is read at."""

    attack: str = "fab"
    grid: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise InputError(f"unknown attack {self.attack!r}; choose one of: {', '.join(ATTACKS.names())}")
        if not ATTACKS.create(self.attack).minimizes_norm:
            raise InputError(f"{self.attack} does not minimize the norm; use fab or cw")
        if any(not (isinstance(e, (int, float)) and math.isfinite(e) and e >= 0) for e in self.grid):
            raise InputError(f"min-norm radii must be finite and >= 0, got {self.grid}")


def norm_profile(norms: Tensor, fooled: Tensor, correct: Tensor, grid: list[float]) -> dict[str, Any]:
    """Distribution of minimal adversarial norms, and robust accuracy as a function of eps read off them.

    A point counts as robust at radius r when it is classified correctly and the attack found no
    adversarial example of norm <= r. This is an upper bound on the true robust accuracy at r (an
    attack finds *a* small perturbation, not necessarily the smallest), like every attack's number.

    Args:
        norms: (N,) norm of each point's adversarial perturbation (any value where not fooled).
        fooled: (N,) the attack found an adversarial example.
        correct: (N,) the point is classified correctly without attack.
        grid: Radii at which to read the accuracy.

    Returns:
        JSON-ready: `attacked`, `found`, `median`, `mean`, `quantiles` and `curve` (eps, accuracy).
    """
    n = len(correct)
    found = norms[fooled & correct].float()
    quantiles = {f"q{int(q * 100)}": float(torch.quantile(found, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)} \
        if found.numel() else {}
    curve = [{"eps": float(r), "accuracy": float((correct & ~(fooled & (norms <= r + 1e-6))).float().mean()) if n
              else 0.0} for r in grid]
    return {"attacked": int(correct.sum()), "found": int(found.numel()), "median": quantiles.get("q50"),
            "mean": float(found.mean()) if found.numel() else None, "quantiles": quantiles, "curve": curve}


@STAGES.register("min-norm")
class MinNormStage(Stage):
    """Run a minimal-norm attack with no radius bound on the correct points and profile the norms it finds.

    FAB (Croce & Hein, ICML 2020, arXiv:1907.02044) or C&W (Carlini & Wagner, S&P 2017,
    arXiv:1608.04644). A point counts as robust at radius r when the attack found no adversarial
    example of norm <= r: an upper bound on the robust accuracy at every r from one run.
    """

    kind = "min-norm"
    Settings = MinNormSettings
    Result = MinNormResult
    settings: MinNormSettings
    flags = (Flag("min_norm", None, "also run a minimal-norm attack (fab or cw) without a radius bound and report "
                  "the norms it finds", choices=("fab", "cw")),)

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The attack, and the curve's radii to read the accuracy at."""
        return {"attack": options["min_norm"] or "fab", "grid": curve_grid(options) or [0.0, options["eps"]]}

    def run(self, ctx: EvalContext) -> MinNormResult:
        """Attack every correct point without a radius bound."""
        attack = ATTACKS.create(self.settings.attack)
        threat = ThreatModel.unbounded(ctx.threat.norm, ctx.data.shape, ctx.threat.bounds)
        norms = torch.zeros(len(ctx.data))
        fooled = torch.zeros(len(ctx.data), dtype=torch.bool)
        shard = ctx.batches(ctx.correct.nonzero().squeeze(1), attack.name)
        for batch in shard:
            result = attack(ctx.model, batch.x, batch.y, threat, generator=batch.generator())
            norms[batch.indices], fooled[batch.indices] = result.norms.float().cpu(), result.success.cpu()
        shard.merge(norms, fooled)
        grid = list(self.settings.grid) or [0.0, ctx.threat.eps]
        profile = norm_profile(norms, fooled, ctx.correct, grid)
        return MinNormResult.from_section({"attack": attack.name, "settings": attack.settings(), **profile})

    @classmethod
    def headline(cls, result: MinNormResult) -> str:
        """The median minimal norm and how many points the attack broke."""
        text = f"{result.attack}: minimal adversarial norm found on {result.found} of {result.attacked} points"
        return text + (f", median {result.median:.4g}" if result.median is not None else "")

    @classmethod
    def html_section(cls, result: MinNormResult) -> str:
        """The norm quantiles, and the accuracy at each radius read off the norms."""
        if result.median is None:
            return ""
        quantiles = ", ".join(f"{esc(k)} {v:.4g}" for k, v in result.quantiles.items())
        rows = "".join(f'<tr><td class="num">{c.eps:.4g}</td><td class="num">{c.accuracy:.1%}</td></tr>'
                       for c in result.curve)
        table = (f'<table><thead><tr><th class="num">radius</th><th class="num">accuracy read off the norms</th>'
                 f"</tr></thead><tbody>{rows}</tbody></table>")
        text = (f"Minimal adversarial norms found by {esc(result.attack)} on {count(result.found)} of "
                f"{count(result.attacked)} points: median {result.median:.4g} ({quantiles}). "
                "An upper bound on the robust accuracy at every radius, from one run.")
        return section_html("min-norm", "Minimal adversarial norms", note_html(text) + table)
