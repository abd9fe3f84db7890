"""The gradient-masking verdict and the ensemble comparison as sections of the HTML report.

Rendered from the report's `verdict` and `ensemble` keys; same look and escaping as
`bastion.report.html`, which imports these at call time.
"""

from __future__ import annotations

from typing import Any

from bastion.report.html import _dict, _e, _note, _pct, _records, _section

__all__ = ["ensemble_section", "masking_sections", "verdict_section"]

_COLOURS = {"reliable": "#2e7d32", "suspicious": "#e67e22", "broken": "#c0392b"}


def verdict_section(verdict: dict[str, Any]) -> str:
    """The verdict, the robust accuracy after escalation beside the flattering one, and every check."""
    name = str(verdict.get("verdict", "?"))
    colour = _COLOURS.get(name, "#52606d")
    headline = (f'<p><b style="color:{colour};font-size:20px;text-transform:uppercase">{_e(name)}</b> · '
                f"robust accuracy <b>{_e(_pct(verdict.get('robust_accuracy')))}</b>")
    if verdict.get("escalated"):
        headline += (f" after escalation; the standard attacks alone gave "
                     f"<b>{_e(_pct(verdict.get('flattering_accuracy')))}</b> (the flattering number)")
    headline += "</p>"
    rows = "".join(
        f"<tr><td>{'<b>fired</b>' if f.get('fired') else 'ok'}</td><td>{_e(f.get('title', f.get('check', '?')))}</td>"
        f"<td>{_e(f.get('severity', '')) if f.get('fired') else ''}</td><td>{_e(f.get('detail', ''))}</td>"
        f"<td>{_e(f.get('action', ''))}</td></tr>"
        for f in map(_dict, _records(verdict.get("findings")))
    )
    table = ('<div class="scroll"><table><thead><tr><th>check</th><th>sign</th><th>severity</th><th>measured</th>'
             f"<th>what was run about it</th></tr></thead><tbody>{rows}</tbody></table></div>")
    adaptive = ", ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in _dict(verdict.get("adaptive")).items() if v)
    defenses = ", ".join(
        f"{d.get('name')} (BPDA {d.get('bpda')}{', random' if d.get('random') else ''})"
        for d in map(_dict, _records(verdict.get("defenses")))
    )
    notes = _note("Checks of Athalye et al. 2018, Carlini et al. 2019 and Pintor et al. 2022. Where one fires, "
                  "bastion attacks the model as an adaptive attacker would (BPDA, EOT, margin loss with more "
                  "restarts, transfer, Square) and reports the worst case.")
    notes += _note(f"Defenses: {_e(defenses)}.") if defenses else ""
    notes += _note(f"Adaptive attacks were given: {_e(adaptive)}.") if adaptive else ""
    return _section("verdict", "Gradient-masking verdict", headline + notes + table)


def ensemble_section(ensemble: dict[str, Any]) -> str:
    """The ensemble's clean and robust accuracy next to each member's."""
    rows: list[tuple[object, object, object]] = [
        ("ensemble", ensemble.get("clean_accuracy"), ensemble.get("robust_accuracy"))]
    rows += [(m.get("name"), m.get("clean_accuracy"), m.get("robust_accuracy"))
             for m in map(_dict, _records(ensemble.get("members")))]
    body = "".join(f"<tr><td>{'<b>' + _e(n) + '</b>' if i == 0 else _e(n)}</td><td class=\"num\">{_pct(c)}</td>"
                   f'<td class="num">{_pct(r)}</td></tr>' for i, (n, c, r) in enumerate(rows))
    table = ('<table><thead><tr><th>model</th><th class="num">clean accuracy</th><th class="num">robust accuracy'
             f"</th></tr></thead><tbody>{body}</tbody></table>")
    intro = _note(f"Combined by {_e(ensemble.get('mode', '?'))}; the ensemble is attacked as one model, each member "
                  "alone with the standard attacks (FGSM, PGD).")
    return _section("ensemble", "Ensemble and its members", intro + table)


def masking_sections(report: dict[str, Any]) -> list[str]:
    """The verdict and ensemble sections a report has (none for reports written before them)."""
    verdict, ensemble = _dict(report.get("verdict")), _dict(report.get("ensemble"))
    return ([verdict_section(verdict)] if verdict else []) + ([ensemble_section(ensemble)] if ensemble else [])
