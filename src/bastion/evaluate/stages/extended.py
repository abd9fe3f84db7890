"""The extended suite's threat models beyond the Lp ball as one stage (see `extended_run`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag
from bastion.evaluate.stage import STAGES, Stage
from bastion.evaluate.stages.extended_html import extended_sections
from bastion.evaluate.stages.extended_run import DEFAULTS, ExtendedOptions, extended_stage
from bastion.evaluate.stages.extended_sections import ExtendedSection
from bastion.evaluate.stages.sparse import SparseResult

__all__ = ["ExtendedResult", "ExtendedSettings", "ExtendedStage"]


@dataclass(frozen=True)
class ExtendedSettings:
    """Attributes: budget (keys of `extended_run.DEFAULTS`), train_data, data_root, device."""

    budget: dict[str, Any] = field(default_factory=dict)
    train_data: str | None = None
    data_root: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.budget) - set(DEFAULTS))
        if unknown:
            raise InputError(f"unknown extended-suite setting(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")


@dataclass(frozen=True)
class ExtendedResult(SparseResult):
    """The budgets every section ran with (`DEFAULTS` and the given ones), and each section in run order."""

    settings: dict[str, Any]
    sections: list[ExtendedSection]


@STAGES.register("extended")
class ExtendedStage(Stage):
    """Patch, spatial, corruptions, one-pixel, universal and HopSkipJump, each with its own threat model."""

    kind = "extended"
    Settings = ExtendedSettings
    Result = ExtendedResult
    settings: ExtendedSettings
    flags = (
        Flag("extended_train_data", None, "data spec the extended suite trains its patch and universal perturbation "
             "on (default: the first half of the evaluated points; the second half measures)", metavar="DATA"),
        Flag("extended_budget", {}, "the extended suite's budgets by name (TOML only; stages.extended_run.DEFAULTS)",
             dict),
    )

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The budgets and the training data."""
        return {"budget": dict(options["extended_budget"]), "train_data": options["extended_train_data"],
                "data_root": options["data_root"], "device": options["device"]}

    def run(self, ctx: EvalContext) -> ExtendedResult:
        """Run every section."""
        s = self.settings
        options = ExtendedOptions(extended_budget=dict(s.budget), extended_train_data=s.train_data,
                                  data_root=s.data_root, device=s.device)
        return ExtendedResult.from_section(extended_stage(ctx, options))

    @classmethod
    def headline(cls, result: ExtendedResult) -> str:
        """Each section's success rate."""
        parts = []
        for section in result.sections:
            rate = section.success_rate
            outcome = "skipped" if section.skipped else (f"{rate:.1%}" if rate is not None else "-")
            parts.append(f"{section.name} {outcome}")
        return "success: " + ", ".join(parts) if parts else "no section ran"

    @classmethod
    def html_section(cls, result: ExtendedResult) -> str:
        """The overview and one section per threat model."""
        return "\n".join(extended_sections(result.to_dict()))
