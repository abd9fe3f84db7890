"""The extended suite's threat models beyond the Lp ball as one stage (see `bastion.evaluate.extended`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.extended import DEFAULTS, ExtendedOptions, extended_stage
from bastion.evaluate.flags import Flag
from bastion.evaluate.stage import STAGES, SectionResult, Stage
from bastion.evaluate.stages.extended_html import extended_sections

__all__ = ["ExtendedSettings", "ExtendedStage"]


@dataclass(frozen=True)
class ExtendedSettings:
    """Attributes: budget (keys of `bastion.evaluate.extended.DEFAULTS`), train_data, data_root, device."""

    budget: dict[str, Any] = field(default_factory=dict)
    train_data: str | None = None
    data_root: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.budget) - set(DEFAULTS))
        if unknown:
            raise InputError(f"unknown extended-suite setting(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")


@STAGES.register("extended")
class ExtendedStage(Stage):
    """Patch, spatial, corruptions, one-pixel, universal and HopSkipJump, each with its own threat model."""

    kind = "extended"
    Settings = ExtendedSettings
    Result = SectionResult
    settings: ExtendedSettings
    flags = (
        Flag("extended_train_data", None, "data spec the extended suite trains its patch and universal perturbation "
             "on (default: the first half of the evaluated points; the second half measures)", metavar="DATA"),
        Flag("extended_budget", {}, "the extended suite's budgets by name (TOML only; bastion.evaluate.extended)",
             dict),
    )

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The budgets and the training data."""
        return {"budget": dict(options["extended_budget"]), "train_data": options["extended_train_data"],
                "data_root": options["data_root"], "device": options["device"]}

    def run(self, ctx: EvalContext) -> SectionResult:
        """Run every section."""
        s = self.settings
        options = ExtendedOptions(extended_budget=dict(s.budget), extended_train_data=s.train_data,
                                  data_root=s.data_root, device=s.device)
        return SectionResult(section=extended_stage(ctx, options))

    @classmethod
    def headline(cls, result: SectionResult) -> str:
        """Each section's success rate."""
        parts = []
        for section in result.section.get("sections", []):
            rate = section.get("success_rate")
            outcome = "skipped" if section.get("skipped") else (f"{rate:.1%}" if isinstance(rate, float) else "-")
            parts.append(f"{section.get('name')} {outcome}")
        return "success: " + ", ".join(parts) if parts else "no section ran"

    @classmethod
    def html_section(cls, result: SectionResult) -> str:
        """The overview and one section per threat model."""
        return "\n".join(extended_sections(result.section))
