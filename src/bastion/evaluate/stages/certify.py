"""Certification by randomized smoothing as a stage: certified accuracy next to the empirical numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.evaluate.context import EvalContext
from bastion.evaluate.flags import Flag, open_unit, positive
from bastion.evaluate.stage import STAGES, Stage
from bastion.evaluate.stages.certify_html import certify_section
from bastion.evaluate.stages.certify_result import CertifyResult
from bastion.evaluate.stages.certify_run import certify_stage
from bastion.evaluate.validation import check_fraction, check_int, check_positive

__all__ = ["CertifyResult", "CertifySettings", "CertifyStage"]


@dataclass(frozen=True)
class CertifySettings:
    """CERTIFY's parameters (Cohen et al. 2019): noise `sigma`, `n0` selection and `n` estimation samples, `alpha`.

    `sequential` decides the table's radii and the threat model's with anytime-valid tests (Voracek &
    Hein 2024); then `n` is a point's budget. None for `n0` or `n` takes the procedure's default
    (fixed: 100 and 10,000; sequential: 16 and 30,000).
    """

    sigma: float = 0.25
    n0: int | None = None
    n: int | None = None
    alpha: float = 0.001
    sequential: bool = False

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma)
        for name in ("n0", "n"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        check_fraction("alpha", self.alpha)


@STAGES.register("certify")
class CertifyStage(Stage):
    """Certify every point by randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918).

    Guarantee: with probability at least 1 - alpha per point, a point counted as certified at
    radius r keeps the smoothed classifier's (correct) prediction within L2 distance r. With an L2
    threat model, SmoothAdv (Salman et al., NeurIPS 2019) attacks the smoothed classifier as well.
    """

    kind = "certify"
    Settings = CertifySettings
    Result = CertifyResult
    settings: CertifySettings
    flags = (
        Flag("certify", False, "also certify each point by randomized smoothing and attack the smoothed classifier "
             "with SmoothAdv (L2 threat models)", bool),
        Flag("sigma", 0.25, "smoothing noise standard deviation (pixel scale)", float, check=positive,
             expects="be > 0"),
        Flag("n0", None, "selection samples per point (default 100; 16 with --sequential)", int, minimum=1),
        Flag("n", None, "estimation samples per point (default 10000); with --sequential the most a point may "
             "draw (default 30000)", int, minimum=1),
        Flag("alpha", 0.001, "certificate error probability", float, check=open_unit, expects="lie in (0, 1)"),
        Flag("sequential", False, "decide certification at the table's radii and the threat model's with "
             "anytime-valid tests, each point stopping as soon as its answer is known (Voracek & Hein 2024)", bool),
    )

    @classmethod
    def from_flags(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The smoothing's and CERTIFY's settings."""
        return {name: options[name] for name in ("sigma", "n0", "n", "alpha", "sequential")}

    def run(self, ctx: EvalContext) -> CertifyResult:
        """Certify and compare; warnings join the evaluation's."""
        s = self.settings
        result = CertifyResult.from_section(
            certify_stage(ctx, sigma=s.sigma, n0=s.n0, n=s.n, alpha=s.alpha, sequential=s.sequential))
        ctx.warnings.extend(result.warnings)
        return result

    @classmethod
    def headline(cls, result: CertifyResult) -> str:
        """Certified accuracy at the threat model, and the smoothed classifier's clean accuracy."""
        summary = result.summary
        text = (f"certified accuracy {result.certified_at_threat:.2%} at the threat model (L2 radius "
                f"{result.threat_radius:.3g}, sigma {result.settings.get('sigma')}); smoothed "
                f"accuracy {summary.accuracy:.2%}, abstain {summary.abstain_rate:.1%}")
        if summary.saved:
            per_point = summary.samples_per_point or 0
            text += f"; {per_point:,.0f} samples per point, {summary.saved:.1f}x fewer than fixed n"
        return text

    @classmethod
    def html_section(cls, result: CertifyResult) -> str:
        """The certified-robustness section."""
        return certify_section(result.to_dict())
