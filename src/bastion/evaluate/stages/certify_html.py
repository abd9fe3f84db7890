"""Randomized-smoothing results as HTML: a section for the evaluation report and a standalone page.

Rendered from the JSON written by `bastion certify` (certify.json) or by the evaluation's certify
stage; same look, offline guarantees and escaping as `bastion.report.html`.
"""

from __future__ import annotations

import math
from typing import Any

from bastion.render.blocks import (
    as_dict,
    as_list,
    count,
    esc,
    note_html,
    num,
    pct,
    section_html,
    settings_html,
)
from bastion.render.svg import bar_chart, line_chart

__all__ = ["certify_section"]

_CURVE_POINTS = 41


def _curve(certify: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Certified accuracy on a fine grid from the per-point rows, or the summary's grid without rows."""
    summary, rows = as_dict(certify.get("summary")), [as_dict(r) for r in as_list(certify.get("rows"))]
    table = [as_dict(p) for p in as_list(summary.get("certified_accuracy"))]
    if not rows:
        return [num(p.get("radius")) or 0.0 for p in table], [num(p.get("accuracy")) or 0.0 for p in table]
    radii = [num(r.get("radius")) or 0.0 for r in rows]
    correct = [bool(r.get("correct")) for r in rows]
    top = max(
        [num(summary.get("max_certifiable_radius")) or 0.0, *radii, *(num(p.get("radius")) or 0.0 for p in table)]
    )
    grid = [top * i / (_CURVE_POINTS - 1) for i in range(_CURVE_POINTS)] if top > 0 else [0.0]
    return grid, [sum(c and r >= g for c, r in zip(correct, radii, strict=True)) / len(rows) for g in grid]


def _cost_html(certify: dict[str, Any]) -> str:
    """What the run cost: samples per point, the saving against fixed-n CERTIFY, and their distribution."""
    summary = as_dict(certify.get("summary"))
    samples = [int(num(as_dict(r).get("samples")) or 0) for r in as_list(certify.get("rows"))]
    if not samples or not summary.get("samples"):
        return ""
    saved = num(summary.get("saved"))
    per_point = num(summary.get("samples_per_point")) or 0
    text = f"{count(summary.get('samples'))} base-model samples in all, {per_point:,.0f} per point (selection included)"
    if saved:
        text += (f": {saved:.1f}x fewer than fixed-n CERTIFY would spend on these points "
                 f"({count(summary.get('fixed_samples'))})")
    edges = [10 ** (e / 2) for e in range(2 * int(math.log10(max(samples))) + 3)]
    bins = [sum(lo <= s < hi for s in samples) / len(samples) for lo, hi in zip(edges, edges[1:], strict=False)]
    first = next(i for i, b in enumerate(bins) if b > 0)
    last = max(i for i, b in enumerate(bins) if b > 0)
    labels = [f"{edges[i]:,.0f}–{edges[i + 1]:,.0f}" for i in range(first, last + 1)]
    chart = bar_chart(labels, {"share of points": bins[first : last + 1]}, y_label="share of points",
                      title="Samples per point", element_id="certify-samples", x_label="base-model samples")
    return f"<h3>What it cost</h3>{note_html(esc(text) + '.')}{chart}"


def certify_section(certify: dict[str, Any]) -> str:
    """The "Certified robustness" section: cards, the certified-accuracy curve, the table at the chosen radii.

    Args:
        certify: A certification result (certify.json, or the evaluation report's `certify` entry):
            `settings`, `summary`, optional `rows` and optional `comparison` (certified vs empirical).
    """
    settings, summary = as_dict(certify.get("settings")), as_dict(certify.get("summary"))
    if not summary:
        return section_html(
            "certified", "Certified robustness (randomized smoothing)", note_html("No certification run.")
        )
    cards = [
        ("smoothed accuracy", pct(summary.get("accuracy"))),
        ("abstain rate", pct(summary.get("abstain_rate"))),
        ("sigma", esc(settings.get("sigma", "—"))),
        ("points", esc(summary.get("n_points", "—"))),
        ("seconds per point", f"{num(summary.get('seconds_per_image')) or 0:.3g}"),
    ]
    if summary.get("samples"):
        cards.append(("samples per point", f"{num(summary.get('samples_per_point')) or 0:,.0f}"))
    if summary.get("saved"):
        cards.append(("fewer samples than fixed n", f"{num(summary.get('saved')) or 0:.1f}x"))
    html = "".join(
        f'<div class="card"><div class="label">{esc(label)}</div><div class="value">{value}</div></div>'
        for label, value in cards
    )
    xs, ys = _curve(certify)
    top = num(summary.get("max_certifiable_radius"))
    chart = line_chart(
        xs,
        {"certified accuracy": ys},
        x_label="L2 radius",
        y_label="certified accuracy",
        title="Certified accuracy against radius",
        element_id="certified-curve",
        x_marker=top,
        x_marker_label=f"largest radius certifiable with n = {settings.get('n', '?')}",
    )
    rows = "".join(
        f'<tr><td class="num">{num(p.get("radius")) or 0:.3g}</td><td class="num">{pct(p.get("accuracy"))}</td></tr>'
        for p in map(as_dict, as_list(summary.get("certified_accuracy")))
    )
    table = (
        f'<table><thead><tr><th class="num">radius</th><th class="num">certified accuracy</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    comparison = "".join(
        f'<tr><td>{esc(c.get("what", "?"))}</td><td class="num">{pct(c.get("accuracy"))}</td></tr>'
        for c in map(as_dict, as_list(certify.get("comparison")))
    )
    if comparison:
        table += (
            '<h3>Certified against empirical</h3><table><thead><tr><th>measure</th><th class="num">'
            f"accuracy</th></tr></thead><tbody>{comparison}</tbody></table>"
        )
    note = note_html(
        "Certified accuracy at radius r: the share of points whose smoothed prediction is correct and certified "
        f"at a radius of at least r, each with probability at least 1 − alpha (alpha = {esc(settings.get('alpha'))}); "
        "abstentions count as errors (Cohen, Rosenfeld &amp; Kolter, ICML 2019). The dashed line marks "
        f"sigma · Φ⁻¹(alpha^(1/n)) = {top or 0:.3g}: no radius can exceed it with n samples, so a curve that stops "
        "there is a property of n, not of the model."
    )
    body = (f'<div class="cards">{html}</div>{chart}{note}{table}{_cost_html(certify)}'
            + note_html(f"Settings: {settings_html(settings)}"))
    return section_html("certified", "Certified robustness (randomized smoothing)", body)
