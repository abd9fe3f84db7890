"""Certification by randomized smoothing as a stage: certified accuracy next to the empirical numbers."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.evaluate.certification import certify_stage
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, SectionResult, Stage
from bastion.evaluate.stages.certify_html import certify_section
from bastion.evaluate.validation import check_fraction, check_int, check_positive

__all__ = ["CertifySettings", "CertifyStage"]


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
    Result = SectionResult
    settings: CertifySettings

    def run(self, ctx: EvalContext) -> SectionResult:
        """Certify and compare; warnings join the evaluation's."""
        s = self.settings
        section = certify_stage(ctx, sigma=s.sigma, n0=s.n0, n=s.n, alpha=s.alpha, sequential=s.sequential)
        ctx.warnings.extend(section.get("warnings", []))
        return SectionResult(section=section)

    @classmethod
    def headline(cls, result: SectionResult) -> str:
        """Certified accuracy at the threat model, and the smoothed classifier's clean accuracy."""
        s = result.section
        summary = s.get("summary", {})
        text = (f"certified accuracy {s.get('certified_at_threat', 0):.2%} at the threat model (L2 radius "
                f"{s.get('threat_radius', 0):.3g}, sigma {s.get('settings', {}).get('sigma')}); smoothed "
                f"accuracy {summary.get('accuracy', 0):.2%}, abstain {summary.get('abstain_rate', 0):.1%}")
        if summary.get("saved"):
            text += (f"; {summary.get('samples_per_point', 0):,.0f} samples per point, {summary['saved']:.1f}x fewer "
                     "than fixed n")
        return text

    @classmethod
    def html_section(cls, result: SectionResult) -> str:
        """The certified-robustness section."""
        return certify_section(result.section)
