"""The gradient-masking verdict as a section of the HTML report, rendered from the report's `verdict` key."""

from __future__ import annotations

from typing import Any

from bastion.render.blocks import as_dict, as_list, esc, note_html, pct, section_html

__all__ = ["verdict_section"]

_COLOURS = {"reliable": "#2e7d32", "suspicious": "#e67e22", "broken": "#c0392b", "meaningless": "#c0392b"}


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
        f"<tr><td>{'<b>fired</b>' if f.get('fired') else 'not seen'}</td>"
        f"<td>{esc(f.get('title', f.get('check', '?')))}</td>"
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
