"""The gradient-masking verdict and the ensemble comparison as sections of the HTML report.

Rendered from the report's `verdict` and `ensemble` keys; same look and escaping as
`bastion.report.html`.
"""

from __future__ import annotations

from typing import Any

from bastion.render.blocks import as_dict, as_list, esc, note_html, pct, section_html

__all__ = ["ensemble_section", "masking_sections", "verdict_section"]

_COLOURS = {"reliable": "#2e7d32", "suspicious": "#e67e22", "broken": "#c0392b"}


def verdict_section(verdict: dict[str, Any]) -> str:
    """The verdict, the robust accuracy after escalation beside the flattering one, and every check."""
    name = str(verdict.get("verdict", "?"))
    colour = _COLOURS.get(name, "#52606d")
    headline = (
        f'<p><b style="color:{colour};font-size:20px;text-transform:uppercase">{esc(name)}</b> · '
        f"robust accuracy <b>{esc(pct(verdict.get('robust_accuracy')))}</b>"
    )
    if verdict.get("escalated"):
        headline += (
            f" after escalation; the standard attacks alone gave "
            f"<b>{esc(pct(verdict.get('flattering_accuracy')))}</b> (the flattering number)"
        )
    headline += "</p>"
    rows = "".join(
        f"<tr><td>{'<b>fired</b>' if f.get('fired') else 'ok'}</td><td>{esc(f.get('title', f.get('check', '?')))}</td>"
        f"<td>{esc(f.get('severity', '')) if f.get('fired') else ''}</td><td>{esc(f.get('detail', ''))}</td>"
        f"<td>{esc(f.get('action', ''))}</td></tr>"
        for f in map(as_dict, as_list(verdict.get("findings")))
    )
    table = (
        '<div class="scroll"><table><thead><tr><th>check</th><th>sign</th><th>severity</th><th>measured</th>'
        f"<th>what was run about it</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
    adaptive = ", ".join(
        f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in as_dict(verdict.get("adaptive")).items()
        if v
    )
    defenses = ", ".join(
        f"{d.get('name')} (BPDA {d.get('bpda')}{', random' if d.get('random') else ''})"
        for d in map(as_dict, as_list(verdict.get("defenses")))
    )
    notes = note_html(
        "Checks of Athalye et al. 2018, Carlini et al. 2019 and Pintor et al. 2022. Where one fires, "
        "bastion attacks the model as an adaptive attacker would (BPDA, EOT, margin loss with more "
        "restarts, transfer, Square) and reports the worst case."
    )
    notes += note_html(f"Defenses: {esc(defenses)}.") if defenses else ""
    notes += note_html(f"Adaptive attacks were given: {esc(adaptive)}.") if adaptive else ""
    return section_html("verdict", "Gradient-masking verdict", headline + notes + table)


def ensemble_section(ensemble: dict[str, Any]) -> str:
    """The ensemble's clean and robust accuracy next to each member's."""
    rows: list[tuple[object, object, object]] = [
        ("ensemble", ensemble.get("clean_accuracy"), ensemble.get("robust_accuracy"))
    ]
    rows += [
        (m.get("name"), m.get("clean_accuracy"), m.get("robust_accuracy"))
        for m in map(as_dict, as_list(ensemble.get("members")))
    ]
    body = "".join(
        f'<tr><td>{"<b>" + esc(n) + "</b>" if i == 0 else esc(n)}</td><td class="num">{pct(c)}</td>'
        f'<td class="num">{pct(r)}</td></tr>'
        for i, (n, c, r) in enumerate(rows)
    )
    table = (
        '<table><thead><tr><th>model</th><th class="num">clean accuracy</th><th class="num">robust accuracy'
        f"</th></tr></thead><tbody>{body}</tbody></table>"
    )
    intro = note_html(
        f"Combined by {esc(ensemble.get('mode', '?'))}; the ensemble is attacked as one model, each member "
        "alone with the standard attacks (FGSM, PGD)."
    )
    return section_html("ensemble", "Ensemble and its members", intro + table)


def masking_sections(report: dict[str, Any]) -> list[str]:
    """The verdict and ensemble sections a report has (none for reports written before them)."""
    verdict, ensemble = as_dict(report.get("verdict")), as_dict(report.get("ensemble"))
    return ([verdict_section(verdict)] if verdict else []) + ([ensemble_section(ensemble)] if ensemble else [])
