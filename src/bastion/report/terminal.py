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
        *_verdict_lines(report.get("verdict")),
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
    lines += _ensemble_lines(report.get("ensemble"))
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def _verdict_lines(verdict: Any) -> list[str]:
    """The gradient-masking verdict: one headline, then each check that fired and what was run about it."""
    if not isinstance(verdict, dict):
        return []
    head = f"verdict {str(verdict.get('verdict', '?')).upper()}"
    if verdict.get("escalated"):
        head += (f"   (escalated: robust accuracy {verdict['robust_accuracy']:.2%}, "
                 f"standard attacks alone {verdict['flattering_accuracy']:.2%})")
    fired = [f for f in verdict.get("findings", []) if f.get("fired")]
    lines = [head] + [f"  [{f['severity']}] {f['title']}: {f['detail']}" + (f"; {f['action']}" if f.get("action")
                                                                                else "") for f in fired]
    return lines if fired else [head + ": no sign of gradient masking"]


def _ensemble_lines(ensemble: Any) -> list[str]:
    if not isinstance(ensemble, dict):
        return []
    rows = [["ensemble", f"{ensemble['clean_accuracy']:.2%}", f"{ensemble['robust_accuracy']:.2%}"]]
    rows += [[m["name"], f"{m['clean_accuracy']:.2%}", f"{m['robust_accuracy']:.2%}"] for m in ensemble["members"]]
    return ["", f"ensemble ({ensemble['mode']}) and its members:",
            *_table(["model", "clean acc", "robust acc"], rows)]
