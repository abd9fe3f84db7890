"""The extended suite's sections of the HTML report (patch, spatial, corruptions, one-pixel, universal, HopSkipJump).

Rendered from the report's `extended` entry (`bastion.evaluate.extended.extended_stage`), with the
look, escaping and offline guarantees of `bastion.report.html`: images must be PNG data URIs.
"""

from __future__ import annotations

import json
from typing import Any

from bastion.report.html import _dict, _e, _img, _note, _num, _pct, _records, _section

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
    items = [f"{_e(k)} = {_e(_value(v))}" for k, v in _dict(budget).items()]
    return '<span class="note">' + "<br>".join(items) + "</span>" if items else "—"


def _overview(sections: list[dict[str, Any]]) -> str:
    rows = []
    for s in sections:
        seconds = _num(s.get("seconds"))
        if s.get("skipped"):
            rows.append(f"<tr><td><strong>{_e(s.get('title', s.get('name', '?')))}</strong></td>"
                        f'<td colspan="6" class="note">skipped: {_e(s["skipped"])}</td></tr>')
            continue
        rows.append(
            f"<tr><td><strong>{_e(s.get('title', '?'))}</strong></td><td>{_e(s.get('threat_model', '—'))}</td>"
            f"<td>{_budget(s.get('budget'))}</td><td class=\"num\">{_e(s.get('attacked', '—'))}</td>"
            f'<td class="num">{_pct(s.get("success_rate"))}</td><td class="num">{_pct(s.get("accuracy"))}</td>'
            f'<td class="num">{"—" if seconds is None else f"{seconds:.1f}"}</td></tr>')
    head = ("<tr><th>section</th><th>threat model</th><th>budget</th><th class=\"num\">attacked</th>"
            '<th class="num">success rate</th><th class="num">accuracy</th><th class="num">seconds</th></tr>')
    intro = _note("Threat models beyond the Lp ball, each with its own budget. Success rate: share of the correctly "
                  "classified points attacked that were fooled (corruptions: share of point x corruption x "
                  "severity misclassified). Accuracy: over every point the section measured.")
    table = f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    return _section("extended", "Beyond the Lp ball (extended suite)", intro + table)


def _pair(first: object, second: object, caption: str) -> str:
    return (f'<figure class="example"><div class="triple"><div>{_img(first, "clean image")}clean</div>'
            f'<div>{_img(second, "attacked image")}attacked</div></div><figcaption>{caption}</figcaption></figure>')


def _patch_caption(item: dict[str, Any]) -> str:
    label, patched = item.get("label"), item.get("patched_prediction")
    shown = f'<span class="fooled">{_e(patched)}</span>' if patched != label else _e(patched)
    return f"true {_e(label)} · clean → {_e(item.get('clean_prediction'))} · with the patch → {shown}"


def _patch(section: dict[str, Any]) -> str:
    details = _dict(section.get("details"))
    figures = "".join(_pair(g.get("clean_png"), g.get("patched_png"), _patch_caption(g))
                      for g in map(_dict, _records(section.get("gallery"))))
    body = (f'<div class="triple"><div style="border:1px solid #9aa5b1">{_img(details.get("patch_png"), "the patch")}'
            "the patch</div></div>"
            + _note(f"{_e(details.get('split', ''))}; held-out clean accuracy "
                    f"{_pct(details.get('clean_accuracy_held_out'))}, with the patch {_pct(section.get('accuracy'))}.")
            + (f'<div class="gallery">{figures}</div>' if figures else ""))
    return _section("extended-patch", _e(section.get("title", "Adversarial patch")), body)


def _spatial(section: dict[str, Any]) -> str:
    d = _dict(section.get("details"))
    figures = "".join(_pair(g.get("clean_png"), g.get("adversarial_png"),
                            f"true {_e(g.get('label'))} → <span class=\"fooled\">{_e(g.get('adversarial_prediction'))}"
                            f"</span> · {(_num(g.get('angle')) or 0):+.1f}°, shift ({(_num(g.get('tx')) or 0):+.1f}, "
                            f"{(_num(g.get('ty')) or 0):+.1f}) px")
                      for g in map(_dict, _records(section.get("gallery"))))
    body = _note(f"Accuracy under the worst transformation: grid search {_pct(d.get('accuracy_grid'))}, first-order "
                 f"{_pct(d.get('accuracy_first_order'))}, per-point worst case of both "
                 f"{_pct(d.get('accuracy_worst_case'))}.")
    body += f'<div class="gallery">{figures}</div>' if figures else ""
    return _section("extended-spatial", _e(section.get("title", "Spatial robustness")), body)


def _corruptions(section: dict[str, Any]) -> str:
    d = _dict(section.get("details"))
    severities, baseline = _records(d.get("severities")), _dict(d.get("baseline"))
    ce, rel = _dict(baseline.get("ce")), _dict(baseline.get("relative_ce"))
    head = "<tr><th>corruption</th>" + "".join(f'<th class="num">severity {_e(s)}</th>' for s in severities)
    head += '<th class="num">CE</th><th class="num">relative CE</th></tr>' if baseline else "</tr>"
    rows = []
    for name, values in _dict(d.get("accuracy")).items():
        cells = "".join(f'<td class="num">{_pct(v)}</td>' for v in _records(values))
        extra = (f'<td class="num">{_ratio(ce.get(name))}</td><td class="num">{_ratio(rel.get(name))}</td>'
                 if baseline else "")
        rows.append(f"<tr><td>{_e(name)}</td>{cells}{extra}</tr>")
    note = f"Clean accuracy {_pct(d.get('clean_accuracy'))}; mean over corruptions and severities " \
           f"{_pct(d.get('mean_accuracy'))}."
    if baseline:
        note += (f" mCE {_ratio(baseline.get('mce'))}, relative mCE {_ratio(baseline.get('relative_mce'))} against "
                 f"{_e(baseline.get('model', '?'))} (CE &lt; 1: fewer errors than the baseline).")
    table = f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    return _section("extended-corruptions", _e(section.get("title", "Common corruptions")), _note(note) + table)


def _universal(section: dict[str, Any]) -> str:
    d = _dict(section.get("details"))
    body = (f'<div class="triple"><div>{_img(d.get("perturbation_png"), "the universal perturbation")}'
            "the perturbation (amplified)</div></div>"
            + _note(f"{_e(d.get('split', ''))}. Success rate = fooling rate (share of held-out images whose predicted "
                    f"label changes); held-out clean accuracy {_pct(d.get('clean_accuracy_held_out'))}, perturbed "
                    f"{_pct(section.get('accuracy'))}; training fooling rate {_pct(d.get('train_fooling_rate'))}."))
    return _section("extended-universal", _e(section.get("title", "Universal perturbation")), body)


def _ratio(value: object) -> str:
    return "—" if (n := _num(value)) is None else f"{n:.3f}"


def extended_sections(extended: dict[str, Any]) -> list[str]:
    """The overview table and one detail section per extended threat model that ran (HTML strings)."""
    sections = [_dict(s) for s in _records(extended.get("sections"))]
    if not sections:
        return []
    parts = [_overview(sections)]
    render = {"patch": _patch, "spatial": _spatial, "corruptions": _corruptions, "universal": _universal}
    for s in sections:
        if not s.get("skipped") and s.get("name") in render:
            parts.append(render[str(s["name"])](s))
    return parts
