"""The evaluation summary as a plain-text table for the terminal."""

from __future__ import annotations

from typing import Any

from bastion.evaluate.report_schema import attack_rows, class_floor, class_rows, curve_rows, stage_records, stage_result

__all__ = ["format_result"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [line.format(*header), line.format(*("-" * w for w in widths)), *(line.format(*row) for row in rows)]
    return [text.rstrip() for text in lines]


def format_result(report: dict[str, Any]) -> str:
    """Summary, attack cascade, curve, flagged classes and every stage's headline of a report dictionary."""
    s = report["summary"]
    n = max(1, int(s.get("n_samples") or 1))
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
            _per_point(a["passes"].get("forward_samples", 0) / n, a["passes"].get("backward_samples", 0) / n),
            f"{a['seconds']:.1f}",
        ]
        for a in attack_rows(report)
    ]
    lines += _table(["attack", "role", "attacked", "fooled", "robust acc", "passes/pt f/b", "seconds"], rows)
    lines.append(f"passes/pt f/b: forward/backward passes through the classifier / the {n} points evaluated, in "
                 "every table; a stage's rows add up to its line under stages")
    curve = curve_rows(report)
    if curve:
        lines += ["", "accuracy vs eps: " + "  ".join(f"{p['eps']:.3g}:{p['accuracy']:.1%}" for p in curve)]
    flagged = [c for c in class_rows(report) if c["flagged"]]
    if flagged:
        names = ", ".join(f"{c['name']} ({c['robust_accuracy']:.1%})" for c in flagged)
        lines.append(f"classes under the floor {class_floor(report):.1%}: {names}")
    lines += _stage_lines(report)
    lines += _ensemble_lines(stage_result(report, "members"))
    lines += _extended_lines(stage_result(report, "extended"))
    lines += _detection_lines(stage_result(report, "detection"))
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def _per_point(forward: float, backward: float) -> str:
    return f"{forward:,.1f}/{backward:,.1f}"


def _stage_lines(report: dict[str, Any]) -> list[str]:
    """Where the time and the passes went: every stage, with its headline (certification and minimal norms too)."""
    stages = stage_records(report)
    if not stages:
        return []
    rows = []
    for stage in stages:
        per_point = stage.get("passes_per_point") or {}
        passes = _per_point(per_point.get("forward", 0.0), per_point.get("backward", 0.0)) if per_point else "-"
        rows.append([str(stage.get("name", "?")), f"{stage.get('seconds', 0.0):.1f}", passes,
                     str(stage.get("headline", ""))])
    total = sum(float(s.get("seconds", 0.0) or 0.0) for s in stages)
    return ["", f"stages ({total:.1f} s in all):", *_table(["stage", "seconds", "passes/pt f/b", "found"], rows)]


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


def _ensemble_lines(ensemble: dict[str, Any]) -> list[str]:
    if ensemble.get("robust_accuracy") is None:  # no members stage, or a model that is no ensemble
        return []
    rows = [["ensemble", f"{ensemble['clean_accuracy']:.2%}", f"{ensemble['robust_accuracy']:.2%}"]]
    rows += [[m["name"], f"{m['clean_accuracy']:.2%}", f"{m['robust_accuracy']:.2%}"] for m in ensemble["members"]]
    return ["", f"ensemble ({ensemble['mode']}) and its members:",
            *_table(["model", "clean acc", "robust acc"], rows)]


def _extended_lines(extended: Any) -> list[str]:
    """One row per section of the extended suite: its threat model and how often the attack succeeded."""
    if not isinstance(extended, dict):
        return []
    rows = []
    for section in extended.get("sections", []):
        if not isinstance(section, dict):
            continue
        rate = section.get("success_rate")
        outcome = "skipped" if section.get("skipped") else (f"{rate:.2%}" if isinstance(rate, (int, float)) else "-")
        rows.append([str(section.get("name", "?")), str(section.get("threat_model") or "")[:70], outcome])
    if not rows:
        return []
    return ["", "beyond the Lp ball (--suite extended):", *_table(["attack", "threat model", "success"], rows)]


def _detection_lines(detection: Any) -> list[str]:
    """Each detector's clean false-positive rate and its detection rate of each attack, plain and adaptive."""
    if not isinstance(detection, dict) or not isinstance(detection.get("detectors"), dict):
        return []
    settings = detection.get("settings", {})
    attacks = list(settings.get("attacks", []))
    rows = []
    for name, entry in detection["detectors"].items():
        rates = entry.get("attacks", {})
        cells = [_rate(rates.get(a, {}).get("rate")) for a in attacks]
        adaptive = entry.get("adaptive", {})
        rows.append([name, _rate(entry.get("clean_fpr")), *cells, _rate(adaptive.get("rate"))])
    header = ["detector", "clean FPR", *(f"{a} detected" for a in attacks), "adaptive detected"]
    return ["", f"detection at {settings.get('fpr', 0.05):.0%} false positives on clean data:", *_table(header, rows)]


def _rate(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"
