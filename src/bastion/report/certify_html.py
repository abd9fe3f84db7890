"""Randomized-smoothing results as HTML: a section for the evaluation report and a standalone page.

Rendered from the JSON written by `bastion certify` (certify.json) or by the evaluation's certify
stage; same look, offline guarantees and escaping as `bastion.report.html`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from bastion._io import write_atomic
from bastion.report.html import _CSS, _SCRIPT, _dict, _e, _note, _num, _pct, _provenance, _records, _section, _settings
from bastion.report.svg import line_chart

__all__ = ["certify_section", "render_certify_html", "write_certify_html"]

_CURVE_POINTS = 41


def _curve(certify: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Certified accuracy on a fine grid from the per-point rows, or the summary's grid without rows."""
    summary, rows = _dict(certify.get("summary")), [_dict(r) for r in _records(certify.get("rows"))]
    table = [_dict(p) for p in _records(summary.get("certified_accuracy"))]
    if not rows:
        return [_num(p.get("radius")) or 0.0 for p in table], [_num(p.get("accuracy")) or 0.0 for p in table]
    radii = [_num(r.get("radius")) or 0.0 for r in rows]
    correct = [bool(r.get("correct")) for r in rows]
    top = max([_num(summary.get("max_certifiable_radius")) or 0.0, *radii,
               *(_num(p.get("radius")) or 0.0 for p in table)])
    grid = [top * i / (_CURVE_POINTS - 1) for i in range(_CURVE_POINTS)] if top > 0 else [0.0]
    return grid, [sum(c and r >= g for c, r in zip(correct, radii, strict=True)) / len(rows) for g in grid]


def certify_section(certify: dict[str, Any]) -> str:
    """The "Certified robustness" section: cards, the certified-accuracy curve, the table at the chosen radii.

    Args:
        certify: A certification result (certify.json, or the evaluation report's `certify` entry):
            `settings`, `summary`, optional `rows` and optional `comparison` (certified vs empirical).
    """
    settings, summary = _dict(certify.get("settings")), _dict(certify.get("summary"))
    if not summary:
        return _section("certified", "Certified robustness (randomized smoothing)", _note("No certification run."))
    cards = [("smoothed accuracy", _pct(summary.get("accuracy"))), ("abstain rate", _pct(summary.get("abstain_rate"))),
             ("sigma", _e(settings.get("sigma", "—"))), ("points", _e(summary.get("n_points", "—"))),
             ("seconds per point", f"{_num(summary.get('seconds_per_image')) or 0:.3g}")]
    html = "".join(f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{value}</div></div>'
                   for label, value in cards)
    xs, ys = _curve(certify)
    top = _num(summary.get("max_certifiable_radius"))
    chart = line_chart(xs, {"certified accuracy": ys}, x_label="L2 radius", y_label="certified accuracy",
                       title="Certified accuracy against radius", element_id="certified-curve", x_marker=top,
                       x_marker_label=f"largest radius certifiable with n = {settings.get('n', '?')}")
    rows = "".join(f'<tr><td class="num">{_num(p.get("radius")) or 0:.3g}</td><td class="num">'
                   f'{_pct(p.get("accuracy"))}</td></tr>'
                   for p in map(_dict, _records(summary.get("certified_accuracy"))))
    table = (f'<table><thead><tr><th class="num">radius</th><th class="num">certified accuracy</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    comparison = "".join(f"<tr><td>{_e(c.get('what', '?'))}</td><td class=\"num\">{_pct(c.get('accuracy'))}</td></tr>"
                         for c in map(_dict, _records(certify.get("comparison"))))
    if comparison:
        table += ("<h3>Certified against empirical</h3><table><thead><tr><th>measure</th><th class=\"num\">"
                  f"accuracy</th></tr></thead><tbody>{comparison}</tbody></table>")
    note = _note(
        "Certified accuracy at radius r: the share of points whose smoothed prediction is correct and certified "
        f"at a radius of at least r, each with probability at least 1 − alpha (alpha = {_e(settings.get('alpha'))}); "
        "abstentions count as errors (Cohen, Rosenfeld &amp; Kolter, ICML 2019). The dashed line marks "
        f"sigma · Φ⁻¹(alpha^(1/n)) = {top or 0:.3g}: no radius can exceed it with n samples, so a curve that stops "
        "there is a property of n, not of the model.")
    body = f'<div class="cards">{html}</div>{chart}{note}{table}' + _note(f"Settings: {_settings(settings)}")
    return _section("certified", "Certified robustness (randomized smoothing)", body)


def render_certify_html(report: dict[str, Any]) -> str:
    """Render certify.json as one self-contained HTML page (inline CSS and SVG, no network access)."""
    provenance = _dict(report.get("provenance"))
    model = _dict(provenance.get("model")).get("spec", "model")
    data = _dict(provenance.get("data")).get("spec", "data")
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    header = (f'<header><h1>bastion certification report</h1><p class="meta"><span>model <b>{_e(model)}</b></span>'
              f"<span>data <b>{_e(data)}</b></span><span>date <b>{_e(report.get('created_at', '—'))}</b></span>"
              "</p></header>")
    body = [header, certify_section(report), _provenance({"provenance": provenance, "config": report.get("settings")})]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>bastion certification report — {_e(model)}</title><style>{_CSS}</style></head>\n<body><main>\n"
            + "\n".join(body) + f"\n</main><script>{_SCRIPT}</script></body></html>\n")


def write_certify_html(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Render certify.json's content and write it to `path` atomically."""
    return write_atomic(path, render_certify_html(report))
