"""The evaluation report as one self-contained HTML page, rendered from the report dictionary (report.json).

CSS, SVG charts and PNG data URIs are inline and a Content-Security-Policy forbids network access, so the page
works offline from ``file://``. Report strings are escaped; image sources must be ``data:image/png`` URIs.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from bastion._io import write_atomic
from bastion.errors import InputError
from bastion.evaluate.report_schema import attack_rows, class_floor, class_rows, curve_rows, stage_records, stage_result
from bastion.evaluate.result import passes_per_point
from bastion.evaluate.stage import STAGES
from bastion.render.blocks import (
    CSS,
    PER_POINT_NOTE,
    SCRIPT,
    as_dict,
    as_list,
    count,
    eps_text,
    esc,
    gallery_img,
    note_html,
    num,
    num_or_nan,
    pct,
    per_point_text,
    provenance_sections,
    section_html,
    settings_html,
    table_row,
    threat_text,
)
from bastion.render.svg import bar_chart, line_chart
from bastion.report.curve_html import curve_costs
from bastion.report.verdict_html import verdict_section

__all__ = ["render_html", "write_html"]


def _header(report: dict[str, Any], summary: dict[str, Any]) -> str:
    get, date = summary.get, str(report.get("created_at", "—")).replace("T", " ")
    meta = [("model", get("model", "—")), ("data", get("data", "—")), ("threat model", threat_text(summary)),
            ("date", date), ("run", report.get("run_id", "—"))]
    items = "".join(f"<span>{esc(name)} <b>{esc(value)}</b></span>" for name, value in meta)
    return f'<header><h1>bastion robustness report</h1><p class="meta">{items}</p></header>'


def _summary(report: dict[str, Any], summary: dict[str, Any]) -> str:
    g = summary.get
    cards = [
        ("clean accuracy", pct(g("clean_accuracy"))),
        ("robust accuracy", pct(g("robust_accuracy"))),
        ("threat model", threat_text(summary)),
        ("samples", count(g("n_samples"))),
    ]
    html = "".join(
        f'<div class="card {label.split()[0]}"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div></div>'
        for label, value in cards
    )
    items = "".join(f'<li class="warning">{esc(w)}</li>' for w in as_list(report.get("warnings")))
    notes = (
        f'<ul class="warnings" role="alert" aria-label="warnings">{items}</ul>'
        if items
        else '<p class="ok">No warnings.</p>'
        if str(as_dict(report.get("verdict")).get("verdict", "reliable")) != "reliable"
        else '<p class="ok">No warnings: the evaluation passed its sanity checks.</p>'
    )
    return section_html("summary", "Summary", f'<div class="cards">{html}</div>{notes}')


def _attacks(report: dict[str, Any]) -> str:
    n_points = max(1.0, num(as_dict(report.get("summary")).get("n_samples")) or 1.0)
    standalone, rows = as_dict(report.get("robust_accuracy_standalone")), []  # schema 1 kept them apart
    for index, attack in enumerate(attack_rows(report), start=1):
        alone = attack.get("standalone_accuracy")
        alone = standalone.get(str(attack.get("name"))) if alone is None else alone
        passes, seconds = as_dict(attack.get("passes")), num(attack.get("seconds"))
        calls = f"{count(passes.get('forward'))} / {count(passes.get('backward'))}"
        per_point = per_point_text(passes_per_point(passes, n_points))
        rows.append(
            table_row(
                [
                    str(index),
                    f'<b title="stage {esc(attack.get("stage") or "?")}">{esc(attack.get("name", "?"))}</b>',
                    esc(attack.get("role", "")),
                    pct(attack.get("robust_accuracy")),
                    pct(alone),
                    count(attack.get("attacked")),
                    count(attack.get("fooled")),
                    f'<span title="batch calls {calls}">{per_point}</span>',
                    "—" if seconds is None else f"{seconds:.2f}",
                    settings_html(attack.get("settings")),
                ],
                "td",
            )
        )
    header = table_row(["#", "attack", "role", "robust acc. after", "robust acc. alone", "attacked", "fooled",
                        "passes per point fwd / bwd", "seconds", "settings"], "th")
    body = "".join(rows) or '<tr><td colspan="10">No attacks in this report.</td></tr>'
    intro = note_html(
        "Run as a cascade: each attack only attacks the points still robust, so the robust "
        "accuracy after it is the worst case over it and every attack before it. The rows of a stage add up to "
        "its row in the Stages table; its work outside its attacks is a row of its own (role “overhead”). "
        f"{PER_POINT_NOTE}"
    )
    table = f'<div class="scroll"><table><thead>{header}</thead><tbody>{body}</tbody></table></div>'
    return section_html("attacks", "Attacks", intro + table)


def _curve(report: dict[str, Any], summary: dict[str, Any]) -> str:
    points = sorted(
        (p for p in curve_rows(report) if num(p.get("eps")) is not None),
        key=lambda p: float(p["eps"]),
    )
    if not points:
        return section_html("robustness-curve", "Robustness curve", note_html("No curve was computed."))
    eps, series = num(summary.get("eps")), {"robust accuracy": [num_or_nan(p.get("accuracy")) for p in points]}
    profile = stage_result(report, "min-norm")
    read_off = {num(p.get("eps")): num_or_nan(p.get("accuracy")) for p in map(as_dict, as_list(profile.get("curve")))}
    if read_off and all(num(p["eps"]) in read_off for p in points):
        series[f"read off {profile.get('attack', 'minimal')} norms"] = [read_off[num(p["eps"])] for p in points]
    chart = line_chart(
        [float(p["eps"]) for p in points],
        series,
        x_label="ε (perturbation budget)",
        y_label="accuracy",
        title="Robust accuracy against ε",
        element_id="curve",
        x_marker=eps,
        x_marker_label=f"threat model ε = {eps_text(eps)}",
    )
    chart += curve_costs(points, num(summary.get("n_samples")) or 1.0)
    settings = as_dict(stage_result(report, "curve").get("settings"))
    note = f"The dashed line marks the threat model’s ε = {esc(eps_text(eps))}."
    note += f" Curve attack: {settings_html(settings)}" if settings else ""
    if profile.get("median") is not None:
        quantiles = ", ".join(f"{esc(k)} {num(v):.4g}" for k, v in as_dict(profile.get("quantiles")).items())
        note += (
            f" Minimal adversarial norms found by {esc(profile.get('attack'))} on {count(profile.get('found'))} "
            f"of {count(profile.get('attacked'))} points: median {num(profile['median']):.4g} ({quantiles})."
        )
    return section_html("robustness-curve", "Robustness curve", chart + note_html(note))


def _per_class(report: dict[str, Any]) -> str:
    classes = class_rows(report)
    if not classes:
        return section_html("per-class-accuracy", "Per-class accuracy", note_html("No per-class results."))
    floor = class_floor(report)
    labels = [str(c.get("name", c.get("label", "?"))) for c in classes]
    groups = {key: [num_or_nan(c.get(f"{key}_accuracy")) for c in classes] for key in ("clean", "robust")}
    chart = bar_chart(
        labels,
        groups,
        y_label="accuracy",
        title="Clean and robust accuracy per class",
        x_label="class",
        highlight=[bool(c.get("flagged")) for c in classes],
        element_id="per-class",
        y_marker=floor,
        y_marker_label=f"floor {pct(floor)}",
    )
    flagged = ", ".join(label for label, c in zip(labels, classes, strict=True) if c.get("flagged"))
    note = (
        f"Classes with robust accuracy below the floor of {esc(pct(floor))} are flagged: <b>{esc(flagged)}</b>."
        if flagged
        else f"No class is below the floor of {esc(pct(floor))}."
    )
    chart = f'<div class="scroll">{chart}</div>' if len(classes) > 24 else chart
    return section_html("per-class-accuracy", "Per-class accuracy", chart + note_html(note))


def _figure(item: dict[str, Any], names: dict[Any, Any]) -> str:
    """Build one gallery example: clean, adversarial and amplified perturbation images with a caption."""

    def label(value: object) -> str:
        name = names.get(value)
        return f"{value} ({name})" if name not in (None, str(value)) else str(value)

    views = (("clean_png", "clean"), ("adversarial_png", "adversarial"), ("perturbation_png", "perturbation"))
    images = "".join(f"<div>{gallery_img(item.get(key), f'{name} image')}{esc(name)}</div>" for key, name in views)
    norm = num(item.get("norm"))
    caption = (
        f"#{esc(item.get('index', '?'))} · true <b>{esc(label(item.get('label')))}</b> · "
        f"clean → {esc(label(item.get('clean_prediction')))} · adversarial → "
        f'<span class="fooled">{esc(label(item.get("adversarial_prediction")))}</span><br>'
        f"attack {esc(item.get('attack', '?'))} · perturbation norm "
        f"{'—' if norm is None else f'{norm:.4g}'}"
    )
    return f'<figure class="example"><div class="triple">{images}</div><figcaption>{caption}</figcaption></figure>'


def _gallery(report: dict[str, Any]) -> str:
    names = {c.get("label"): c.get("name") for c in class_rows(report)}
    figures = "".join(_figure(item, names) for item in map(as_dict, as_list(report.get("gallery"))))
    intro = note_html("Clean input, adversarial input, and the perturbation amplified (mid grey = unchanged).")
    return section_html(
        "gallery",
        "Adversarial examples",
        intro + (f'<div class="gallery">{figures}</div>' if figures else note_html("No examples.")),
    )


def _stages(report: dict[str, Any]) -> str:
    """Where the time and the passes went: every stage with its headline, seconds and passes per point."""
    rows = []
    for stage in stage_records(report):
        per_point = as_dict(stage.get("passes_per_point"))
        passes = per_point_text({k: num(per_point.get(k)) or 0.0 for k in ("forward", "backward")}) if per_point \
            else "—"
        seconds = num(stage.get("seconds"))
        rows.append(f"<tr><td><b>{esc(stage.get('name', '?'))}</b></td><td>{esc(stage.get('headline', ''))}</td>"
                    f'<td class="num">{"—" if seconds is None else f"{seconds:.1f}"}</td>'
                    f'<td class="num">{passes}</td></tr>')
    if not rows:
        return ""
    head = ('<tr><th>stage</th><th>what it found</th><th class="num">seconds</th>'
            '<th class="num">passes per point fwd / bwd</th></tr>')
    intro = note_html(f"Every stage in run order, with what it cost. {PER_POINT_NOTE}")
    table = f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    return section_html("stages", "Stages", intro + table)


def _stage_sections(report: dict[str, Any]) -> list[str]:
    """Each stage's own section (certification, minimal norms, ensemble, extended suite, detection)."""
    sections = []
    for stage in stage_records(report):
        kind = str(stage.get("kind", ""))
        if kind not in STAGES:
            continue
        cls = STAGES.get(kind)
        try:
            result = cls.Result.from_dict(as_dict(stage.get("result")))  # type: ignore[attr-defined]
        except (TypeError, KeyError, ValueError, InputError):
            continue  # a stage result this version cannot read: the common sections still render
        html = str(cls.html_section(result))  # type: ignore[attr-defined]
        if html:
            sections.append(html)
    return sections


def render_html(report: dict[str, Any]) -> str:
    """Render a report dictionary (the content of report.json) as one self-contained HTML5 page.

    Missing optional keys render as "—" or a short note, so partial reports still produce a page.

    Args:
        report: The report, as written by the evaluation pipeline (any schema_version: see `report_schema`).

    Returns:
        The HTML text.
    """
    summary = as_dict(report.get("summary"))
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    version = as_dict(as_dict(report.get("provenance")).get("versions")).get("bastion", "")
    body = [
        _header(report, summary),
        _summary(report, summary),
        *([verdict_section(as_dict(report["verdict"]))] if as_dict(report.get("verdict")) else []),
        _attacks(report),
        _curve(report, summary),
        _per_class(report),
        *_stage_sections(report),
        _stages(report),
        _gallery(report),
        provenance_sections(report),
        f"<footer>bastion {esc(version)} · report schema {esc(report.get('schema_version', '?'))}</footer>",
    ]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>bastion robustness report — {esc(summary.get('model', 'model'))}</title>"
        f"<style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + f"\n</main><script>{SCRIPT}</script></body></html>\n"
    )


def write_html(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Render `report` and write it to `path` atomically (a temporary file, then a rename).

    Args:
        report: The report dictionary.
        path: Destination file; its parent directory is created if needed.

    Returns:
        The path written.
    """
    return write_atomic(path, render_html(report))
