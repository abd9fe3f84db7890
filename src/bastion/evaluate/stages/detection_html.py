"""The detection section as HTML: one table of detectors against attacks, plain and adaptive.

Rendered from the JSON `detection_stage` returns (or detection.json from `bastion detect`), with the
evaluation report's look and escaping; a standalone page with inline CSS and no network access.
"""

from __future__ import annotations

from typing import Any

from bastion.render.blocks import as_dict, esc, note_html, num, pct, section_html, settings_html

__all__ = ["detection_section_html"]


def _threshold(value: object) -> str:
    return "—" if (number := num(value)) is None else f"{number:.4g}"


def _rate(row: dict[str, Any]) -> str:
    """A detection rate with the number of successful examples it is measured on."""
    return f'{pct(row.get("rate"))} <span class="note">of {esc(row.get("n_success", "—"))}</span>'


def _row(cells: list[str], tag: str) -> str:
    """A table row; every column but the first is numeric (right-aligned)."""
    return (
        "<tr>"
        + "".join(f"<{tag}>{c}</{tag}>" if i == 0 else f'<{tag} class="num">{c}</{tag}>' for i, c in enumerate(cells))
        + "</tr>"
    )


def detection_section_html(section: dict[str, Any]) -> str:
    """The "Detection" section: per detector, threshold, clean FPR, detection rate per attack, adaptive attack.

    Args:
        section: The dict `detection_stage` returns (keys `settings`, `detectors`, `warnings`).
    """
    settings, detectors = as_dict(section.get("settings")), as_dict(section.get("detectors"))
    if not detectors:
        return section_html("detection", "Detection", note_html("No detection run."))
    attacks = list(dict.fromkeys(a for d in map(as_dict, detectors.values()) for a in as_dict(d.get("attacks"))))
    adaptive = any(as_dict(d).get("adaptive") for d in detectors.values())
    head = [
        "detector",
        "threshold",
        "clean FPR (calibration)",
        "clean FPR (held out)",
        *(f"detected: {a}" for a in attacks),
    ]
    head += ["detected: adaptive", "fooled and undetected: adaptive"] if adaptive else []
    rows = []
    for name, raw in detectors.items():
        d = as_dict(raw)
        cells = [
            f"<b>{esc(name)}</b>",
            _threshold(d.get("threshold")),
            pct(d.get("calibration_fpr")),
            pct(d.get("clean_fpr")),
        ]
        for attack in attacks:
            row = as_dict(as_dict(d.get("attacks")).get(attack))
            cells.append(_rate(row))
        if adaptive:
            a = as_dict(d.get("adaptive"))
            cells += [_rate(a), f'<span class="fooled">{pct(a.get("evasion_rate"))}</span>']
        rows.append(_row(cells, "td"))
    header = _row([esc(h) for h in head], "th")
    table = f'<div class="scroll"><table><thead>{header}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    warnings = "".join(f'<li class="warning">{esc(w)}</li>' for w in section.get("warnings") or [])
    fpr = pct(settings.get("fpr"))
    note = note_html(
        f"Thresholds are set on {esc(settings.get('n_calibration', '?'))} clean images "
        f"({esc(settings.get('calibration', '?'))}) for a false-positive rate of at most {fpr} on new clean inputs "
        "(conformal quantile s<sub>(⌈(n+1)(1−α)⌉)</sub>); the held-out column measures it on "
        f"{esc(settings.get('n_held_out', '?'))} other clean images. A detection rate counts only adversarial examples "
        f"that fool the classifier ({esc(settings.get('threat', ''))}). The adaptive attack knows the detector and "
        "must fool the classifier while keeping the score under the threshold (Carlini &amp; Wagner 2017); its "
        "last column is the share of attacked points that get through both — what a detector is worth against "
        "an attacker who knows it."
    )
    body = table + note + (f'<ul class="warnings" role="alert">{warnings}</ul>' if warnings else "")
    return section_html(
        "detection", "Detection of adversarial examples", body + note_html(f"Settings: {settings_html(settings)}")
    )
