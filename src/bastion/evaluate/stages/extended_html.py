"""The extended suite's sections of the HTML report (patch, spatial, corruptions, one-pixel, universal, HopSkipJump).

Rendered from the extended stage's result (`bastion.evaluate.stages.extended_run.extended_stage`), with the
look, escaping and offline guarantees of `bastion.report.html`: images must be PNG data URIs.
"""

from __future__ import annotations

import json
from typing import Any

from bastion.render.blocks import as_dict, as_list, esc, gallery_img, note_html, num, pct, section_html

__all__ = ["extended_sections"]


def _value(value: object) -> str:
    """A budget value in a few characters: numbers to 3 significant digits, lists and dicts inline."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value) if isinstance(value, (str, int)) else json.dumps(value, default=str)


def _budget(budget: object) -> str:
    """The budget as wrapping text (one item per line), not as unbreakable code."""
    items = [f"{esc(k)} = {esc(_value(v))}" for k, v in as_dict(budget).items()]
    return '<span class="note">' + "<br>".join(items) + "</span>" if items else "—"


def _overview(sections: list[dict[str, Any]]) -> str:
    rows = []
    for s in sections:
        seconds = num(s.get("seconds"))
        if s.get("skipped"):
            rows.append(
                f"<tr><td><strong>{esc(s.get('title', s.get('name', '?')))}</strong></td>"
                f'<td colspan="6" class="note">skipped: {esc(s["skipped"])}</td></tr>'
            )
            continue
        rows.append(
            f"<tr><td><strong>{esc(s.get('title', '?'))}</strong></td><td>{esc(s.get('threat_model', '—'))}</td>"
            f'<td>{_budget(s.get("budget"))}</td><td class="num">{esc(s.get("attacked", "—"))}</td>'
            f'<td class="num">{pct(s.get("success_rate"))}</td><td class="num">{pct(s.get("accuracy"))}</td>'
            f'<td class="num">{"—" if seconds is None else f"{seconds:.1f}"}</td></tr>'
        )
    head = (
        '<tr><th>section</th><th>threat model</th><th>budget</th><th class="num">attacked</th>'
        '<th class="num">success rate</th><th class="num">accuracy</th><th class="num">seconds</th></tr>'
    )
    intro = note_html(
        "Threat models beyond the Lp ball, each with its own budget. Success rate: share of the correctly "
        "classified points attacked that were fooled (corruptions: share of point x corruption x "
        "severity misclassified). Accuracy: over every point the section measured."
    )
    table = f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    return section_html("extended", "Beyond the Lp ball (extended suite)", intro + table)


def _pair(first: object, second: object, caption: str) -> str:
    return (
        f'<figure class="example"><div class="triple"><div>{gallery_img(first, "clean image")}clean</div>'
        f"<div>{gallery_img(second, 'attacked image')}attacked</div></div><figcaption>{caption}</figcaption></figure>"
    )


def _patch_caption(item: dict[str, Any]) -> str:
    label, patched = item.get("label"), item.get("patched_prediction")
    shown = f'<span class="fooled">{esc(patched)}</span>' if patched != label else esc(patched)
    return f"true {esc(label)} · clean → {esc(item.get('clean_prediction'))} · with the patch → {shown}"


def _patch(section: dict[str, Any]) -> str:
    details = as_dict(section.get("details"))
    figures = "".join(
        _pair(g.get("clean_png"), g.get("patched_png"), _patch_caption(g))
        for g in map(as_dict, as_list(section.get("gallery")))
    )
    body = (
        '<div class="triple"><div style="border:1px solid #9aa5b1">'
        f'{gallery_img(details.get("patch_png"), "the patch")}'
        "the patch</div></div>"
        + note_html(
            f"{esc(details.get('split', ''))}; held-out clean accuracy "
            f"{pct(details.get('clean_accuracy_held_out'))}, with the patch {pct(section.get('accuracy'))}."
        )
        + (f'<div class="gallery">{figures}</div>' if figures else "")
    )
    return section_html("extended-patch", esc(section.get("title", "Adversarial patch")), body)


def _spatial(section: dict[str, Any]) -> str:
    d = as_dict(section.get("details"))
    figures = "".join(
        _pair(
            g.get("clean_png"),
            g.get("adversarial_png"),
            f'true {esc(g.get("label"))} → <span class="fooled">{esc(g.get("adversarial_prediction"))}'
            f"</span> · {(num(g.get('angle')) or 0):+.1f}°, shift ({(num(g.get('tx')) or 0):+.1f}, "
            f"{(num(g.get('ty')) or 0):+.1f}) px",
        )
        for g in map(as_dict, as_list(section.get("gallery")))
    )
    body = note_html(
        f"Accuracy under the worst transformation: grid search {pct(d.get('accuracy_grid'))}, first-order "
        f"{pct(d.get('accuracy_first_order'))}, per-point worst case of both "
        f"{pct(d.get('accuracy_worst_case'))}."
    )
    body += f'<div class="gallery">{figures}</div>' if figures else ""
    return section_html("extended-spatial", esc(section.get("title", "Spatial robustness")), body)


def _corruptions(section: dict[str, Any]) -> str:
    d = as_dict(section.get("details"))
    severities, baseline = as_list(d.get("severities")), as_dict(d.get("baseline"))
    ce, rel = as_dict(baseline.get("ce")), as_dict(baseline.get("relative_ce"))
    head = "<tr><th>corruption</th>" + "".join(f'<th class="num">severity {esc(s)}</th>' for s in severities)
    head += '<th class="num">CE</th><th class="num">relative CE</th></tr>' if baseline else "</tr>"
    rows = []
    for name, values in as_dict(d.get("accuracy")).items():
        cells = "".join(f'<td class="num">{pct(v)}</td>' for v in as_list(values))
        extra = (
            f'<td class="num">{_ratio(ce.get(name))}</td><td class="num">{_ratio(rel.get(name))}</td>'
            if baseline
            else ""
        )
        rows.append(f"<tr><td>{esc(name)}</td>{cells}{extra}</tr>")
    note = (
        f"Clean accuracy {pct(d.get('clean_accuracy'))}; mean over corruptions and severities "
        f"{pct(d.get('mean_accuracy'))}."
    )
    if baseline:
        note += (
            f" mCE {_ratio(baseline.get('mce'))}, relative mCE {_ratio(baseline.get('relative_mce'))} against "
            f"{esc(baseline.get('model', '?'))} (CE &lt; 1: fewer errors than the baseline)."
        )
    table = f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    return section_html(
        "extended-corruptions", esc(section.get("title", "Common corruptions")), note_html(note) + table
    )


def _universal(section: dict[str, Any]) -> str:
    d = as_dict(section.get("details"))
    body = (
        f'<div class="triple"><div>{gallery_img(d.get("perturbation_png"), "the universal perturbation")}'
        "the perturbation (amplified)</div></div>"
        + note_html(
            f"{esc(d.get('split', ''))}. Success rate = fooling rate (share of held-out images whose predicted "
            f"label changes); held-out clean accuracy {pct(d.get('clean_accuracy_held_out'))}, perturbed "
            f"{pct(section.get('accuracy'))}; training fooling rate {pct(d.get('train_fooling_rate'))}."
        )
    )
    return section_html("extended-universal", esc(section.get("title", "Universal perturbation")), body)


def _ratio(value: object) -> str:
    return "—" if (n := num(value)) is None else f"{n:.3f}"


def extended_sections(extended: dict[str, Any]) -> list[str]:
    """The overview table and one detail section per extended threat model that ran (HTML strings)."""
    sections = [as_dict(s) for s in as_list(extended.get("sections"))]
    if not sections:
        return []
    parts = [_overview(sections)]
    render = {"patch": _patch, "spatial": _spatial, "corruptions": _corruptions, "universal": _universal}
    for s in sections:
        if not s.get("skipped") and s.get("name") in render:
            parts.append(render[str(s["name"])](s))
    return parts
