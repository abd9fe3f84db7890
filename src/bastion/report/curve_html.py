"""What the accuracy-vs-eps curve cost, radius by radius: the table under the report's curve."""

from __future__ import annotations

from typing import Any

from bastion.evaluate.result import passes_per_point
from bastion.render.blocks import as_dict, count, esc, num, pct, per_point_text

__all__ = ["curve_costs"]

_SOURCES = {
    "cascade": "the evaluation's worst case at eps",
    "attack": "the curve's attack on the points still robust",
    "cascade+attack": "the cascade's examples shrunk toward their points, then the curve's attack on the rest",
}


def curve_costs(points: list[dict[str, Any]], n_points: float) -> str:
    """A table of each radius: its accuracy, where it comes from, the points attacked there and their passes.

    Empty for reports written before the curve recorded its costs.
    """
    if not any("source" in p for p in points):
        return ""
    rows = []
    for p in points:
        rows.append(f"<tr><td>{num(p.get('eps')) or 0:.4g}</td><td class=\"num\">{pct(p.get('accuracy'))}</td>"
                    f"<td>{esc(_SOURCES.get(str(p.get('source')), p.get('source') or '—'))}</td>"
                    f'<td class="num">{count(p.get("attacked"))}</td>'
                    f'<td class="num">{per_point_text(passes_per_point(as_dict(p.get("passes")), n_points))}</td></tr>')
    head = ('<tr><th>ε</th><th class="num">accuracy</th><th>from</th><th class="num">attacked</th>'
            '<th class="num">passes per point fwd / bwd</th></tr>')
    return f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
