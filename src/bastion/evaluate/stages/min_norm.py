"""The minimal-norm profile: what a minimal-norm attack (FAB, C&W) tells for free at every radius at once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.attacks import ATTACKS
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag
from bastion.evaluate.minnorm import norm_profile
from bastion.evaluate.result import CurvePoint
from bastion.evaluate.stage import STAGES, SectionResult, Stage
from bastion.evaluate.stages.curve_grid import curve_grid
from bastion.render.blocks import as_dict, count, esc, note_html, num, section_html
from bastion.threat import ThreatModel

__all__ = ["MinNormResult", "MinNormSettings", "MinNormStage"]


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


@dataclass(frozen=True)
class MinNormResult(SectionResult):
    """The minimal-norm profile (its `section`), and the accuracy read off it at each radius: a typed handle."""

    def bounds(self) -> list[CurvePoint]:
        """The robust accuracy at each radius of the grid that the minimal norms allow (an upper bound)."""
        return [CurvePoint(eps=float(c["eps"]), accuracy=float(c["accuracy"])) for c in self.section.get("curve", [])]


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
        return MinNormResult(section={"attack": attack.name, "settings": attack.settings(), **profile})

    @classmethod
    def headline(cls, result: MinNormResult) -> str:
        """The median minimal norm and how many points the attack broke."""
        p = result.section
        median = p.get("median")
        text = f"{p.get('attack')}: minimal adversarial norm found on {p.get('found')} of {p.get('attacked')} points"
        return text + (f", median {median:.4g}" if isinstance(median, (int, float)) else "")

    @classmethod
    def html_section(cls, result: MinNormResult) -> str:
        """The norm quantiles, and the accuracy at each radius read off the norms."""
        p = as_dict(result.section)
        if p.get("median") is None:
            return ""
        quantiles = ", ".join(f"{esc(k)} {num(v) or 0:.4g}" for k, v in as_dict(p.get("quantiles")).items())
        rows = "".join(f'<tr><td class="num">{num(c.get("eps")) or 0:.4g}</td>'
                       f'<td class="num">{num(c.get("accuracy")) or 0:.1%}</td></tr>'
                       for c in map(as_dict, p.get("curve") or []))
        table = (f'<table><thead><tr><th class="num">radius</th><th class="num">accuracy read off the norms</th>'
                 f"</tr></thead><tbody>{rows}</tbody></table>")
        text = (f"Minimal adversarial norms found by {esc(p.get('attack'))} on {count(p.get('found'))} of "
                f"{count(p.get('attacked'))} points: median {num(p.get('median')) or 0:.4g} ({quantiles}). "
                "An upper bound on the robust accuracy at every radius, from one run.")
        return section_html("min-norm", "Minimal adversarial norms", note_html(text) + table)
