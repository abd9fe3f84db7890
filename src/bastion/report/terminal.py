"""The evaluation summary as a plain-text table for the terminal."""

from __future__ import annotations

from typing import Any

__all__ = ["format_result"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*header), line.format(*("-" * w for w in widths)), *(line.format(*row) for row in rows)]


def format_result(report: dict[str, Any]) -> str:
    """Summary, attack cascade, curve and flagged classes of a report dictionary."""
    s = report["summary"]
    lines = [
        f"model {s['model']}  data {s['data']}  ({s['n_samples']} points)  threat {s['norm']} eps={s['eps']:.4g}",
        f"clean accuracy {s['clean_accuracy']:.2%}   robust accuracy {s['robust_accuracy']:.2%}",
        "",
    ]
    rows = [
        [
            a["name"],
            a["role"],
            str(a["attacked"]),
            str(a["fooled"]),
            f"{a['robust_accuracy']:.2%}",
            f"{a['passes']['forward']}/{a['passes']['backward']}",
            f"{a['seconds']:.1f}",
        ]
        for a in report["attacks"]
    ]
    lines += _table(["attack", "role", "attacked", "fooled", "robust acc", "fwd/bwd", "seconds"], rows)
    if report.get("curve"):
        lines += ["", "accuracy vs eps: " + "  ".join(f"{p['eps']:.3g}:{p['accuracy']:.1%}" for p in report["curve"])]
    flagged = [c for c in report.get("per_class", []) if c["flagged"]]
    if flagged:
        names = ", ".join(f"{c['name']} ({c['robust_accuracy']:.1%})" for c in flagged)
        lines.append(f"classes under the floor {report['class_floor']:.1%}: {names}")
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)
