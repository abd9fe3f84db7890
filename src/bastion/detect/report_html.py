"""The detection section as HTML: one table of detectors against attacks, plain and adaptive.

Rendered from the JSON `detection_stage` returns (or detection.json from `bastion detect`), with the
evaluation report's look and escaping; a standalone page with inline CSS and no network access.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from bastion.report.html import _CSS, _SCRIPT, _dict, _e, _note, _num, _pct, _section, _settings

__all__ = ["detection_section_html", "render_detection_html"]


def _threshold(value: object) -> str:
    return "—" if (number := _num(value)) is None else f"{number:.4g}"


def _rate(row: dict[str, Any]) -> str:
    """A detection rate with the number of successful examples it is measured on."""
    return f'{_pct(row.get("rate"))} <span class="note">of {_e(row.get("n_success", "—"))}</span>'


def _row(cells: list[str], tag: str) -> str:
    """A table row; every column but the first is numeric (right-aligned)."""
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" if i == 0 else f'<{tag} class="num">{c}</{tag}>'
                            for i, c in enumerate(cells)) + "</tr>"


def detection_section_html(section: dict[str, Any]) -> str:
    """The "Detection" section: per detector, threshold, clean FPR, detection rate per attack, adaptive attack.

    Args:
        section: The dict `detection_stage` returns (keys `settings`, `detectors`, `warnings`).
    """
    settings, detectors = _dict(section.get("settings")), _dict(section.get("detectors"))
    if not detectors:
        return _section("detection", "Detection", _note("No detection run."))
    attacks = list(dict.fromkeys(a for d in map(_dict, detectors.values()) for a in _dict(d.get("attacks"))))
    adaptive = any(_dict(d).get("adaptive") for d in detectors.values())
    head = ["detector", "threshold", "clean FPR (calibration)", "clean FPR (held out)",
            *(f"detected: {a}" for a in attacks)]
    head += ["detected: adaptive", "fooled and undetected: adaptive"] if adaptive else []
    rows = []
    for name, raw in detectors.items():
        d = _dict(raw)
        cells = [f"<b>{_e(name)}</b>", _threshold(d.get("threshold")), _pct(d.get("calibration_fpr")),
                 _pct(d.get("clean_fpr"))]
        for attack in attacks:
            row = _dict(_dict(d.get("attacks")).get(attack))
            cells.append(_rate(row))
        if adaptive:
            a = _dict(d.get("adaptive"))
            cells += [_rate(a), f'<span class="fooled">{_pct(a.get("evasion_rate"))}</span>']
        rows.append(_row(cells, "td"))
    header = _row([_e(h) for h in head], "th")
    table = f'<div class="scroll"><table><thead>{header}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    warnings = "".join(f'<li class="warning">{_e(w)}</li>' for w in section.get("warnings") or [])
    fpr = _pct(settings.get("fpr"))
    note = _note(
        f"Thresholds are set on {_e(settings.get('n_calibration', '?'))} clean images "
        f"({_e(settings.get('calibration', '?'))}) for a false-positive rate of at most {fpr} on new clean inputs "
        "(conformal quantile s<sub>(⌈(n+1)(1−α)⌉)</sub>); the held-out column measures it on "
        f"{_e(settings.get('n_held_out', '?'))} other clean images. A detection rate counts only adversarial examples "
        f"that fool the classifier ({_e(settings.get('threat', ''))}). The adaptive attack knows the detector and "
        "must fool the classifier while keeping the score under the threshold (Carlini &amp; Wagner 2017); its "
        "last column is the share of attacked points that get through both — what a detector is worth against "
        "an attacker who knows it.")
    body = table + note + (f'<ul class="warnings" role="alert">{warnings}</ul>' if warnings else "")
    return _section("detection", "Detection of adversarial examples", body + _note(f"Settings: {_settings(settings)}"))


def render_detection_html(report: dict[str, Any]) -> str:
    """Render detection.json (`bastion detect`) as one self-contained HTML page."""
    provenance = _dict(report.get("provenance"))
    model, data = provenance.get("model", "model"), provenance.get("data", "data")
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    header = (f'<header><h1>bastion detection report</h1><p class="meta"><span>model <b>{_e(model)}</b></span>'
              f"<span>data <b>{_e(data)}</b></span><span>date <b>{_e(report.get('created_at', '—'))}</b></span>"
              "</p></header>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>bastion detection report — {_e(model)}</title><style>{_CSS}</style></head>\n<body><main>\n"
            f"{header}\n{detection_section_html(_dict(report.get('detection')))}\n</main>"
            f"<script>{_SCRIPT}</script></body></html>\n")
