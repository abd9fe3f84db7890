"""Charts of the dashboard that `bastion.render.svg` does not draw: curves on different x grids overlaid."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from bastion.render.svg import PALETTE

__all__ = ["overlay_chart", "run_ticks"]

_INK, _MUTED, _GRID = "#1f2933", "#52606d", "#e4e7eb"
_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 640, 380, 64, 24, 70, 58


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target if span > 0 else 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw * (1 - 1e-9))


def _text(x: float, y: float, content: str, *, anchor: str = "middle", size: int = 12, fill: str = _MUTED,
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f"{escape(content)}</text>")


def overlay_chart(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str, x_label: str,
                  y_label: str, element_id: str | None = None, dashed: Sequence[bool] | None = None,
                  x_ticks: Sequence[tuple[float, str]] | None = None) -> str:
    """Draw several (x, y) curves, each on its own x grid, on shared axes (y in [0, 1]).

    Each curve is a ``<polyline class="series" data-series=NAME>`` with a ``<circle>`` and tooltip per
    point; non-finite points are dropped.

    Args:
        curves: Curve name -> (xs, ys), of equal lengths.
        title: Chart title (also the accessible name).
        x_label: Label under the x axis.
        y_label: Label beside the y axis.
        element_id: The ``id`` of the ``<svg>`` element.
        dashed: One flag per curve: draw it dashed (curves past the palette's colours are dashed anyway).
        x_ticks: (x, label) ticks of the x axis; None chooses round numbers.

    Raises:
        ValueError: If a curve's xs and ys differ in length.
    """
    points: dict[str, list[tuple[float, float]]] = {}
    for name, (xs, ys) in curves.items():
        if len(xs) != len(ys):
            raise ValueError(f"curve {name!r} has {len(xs)} x values and {len(ys)} y values")
        points[name] = sorted((float(x), float(y)) for x, y in zip(xs, ys, strict=True)
                              if math.isfinite(x) and math.isfinite(y))
    all_x = [x for pts in points.values() for x, _ in pts]
    step = _nice_step(max(all_x, default=1.0) - min(all_x, default=0.0))
    x_lo = math.floor(min(all_x, default=0.0) / step + 1e-9) * step
    x_hi = max(math.ceil(max(all_x, default=1.0) / step - 1e-9) * step, x_lo + step)

    def sx(x: float) -> float:
        return _LEFT + (x - x_lo) / (x_hi - x_lo) * (_WIDTH - _LEFT - _RIGHT)

    def sy(y: float) -> float:
        return _HEIGHT - _BOTTOM - min(max(y, 0.0), 1.0) * (_HEIGHT - _TOP - _BOTTOM)

    id_attr = f' id="{escape(element_id)}"' if element_id else ""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg"{id_attr} class="chart overlay-chart" role="img" '
             f'aria-label="{escape(title)}" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" height="{_HEIGHT}" '
             'font-family="system-ui, sans-serif">', f"<title>{escape(title)}</title>",
             f'<rect class="background" width="{_WIDTH}" height="{_HEIGHT}" fill="#ffffff"/>',
             _text(_LEFT, 22, title, anchor="start", size=15, fill=_INK, extra=' font-weight="600"')]
    base = sy(0.0)
    for i in range(6):
        y = sy(i / 5)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="{_GRID}"/>'
                     + _text(_LEFT - 8, y + 4, f"{i / 5:g}", anchor="end"))
    if x_ticks is None:
        values = [x_lo + i * step for i in range(int(round((x_hi - x_lo) / step)) + 1)]
        x_ticks = [(v, f"{round(v, 9):.4g}") for v in values]
    for tick, label in x_ticks:
        parts.append(f'<line x1="{sx(tick):.1f}" y1="{base:.1f}" x2="{sx(tick):.1f}" y2="{base + 5:.1f}" '
                     f'stroke="{_MUTED}"/>' + _text(sx(tick), base + 19, label))
    parts += [f'<line x1="{_LEFT}" y1="{base:.1f}" x2="{_WIDTH - _RIGHT}" y2="{base:.1f}" stroke="{_MUTED}"/>',
              f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base:.1f}" stroke="{_MUTED}"/>',
              _text((_LEFT + _WIDTH - _RIGHT) / 2, _HEIGHT - 12, x_label, size=13, fill=_INK),
              _text(18, (_TOP + base) / 2, y_label, size=13, fill=_INK,
                    extra=f' transform="rotate(-90 18 {(_TOP + base) / 2:.1f})"')]
    if not all_x:
        parts.append(_text((_LEFT + _WIDTH - _RIGHT) / 2, (_TOP + base) / 2, "no data", size=14,
                           extra=' class="no-data"'))
    flags = list(dashed) if dashed is not None else [False] * len(points)
    legend_x, legend_y = float(_LEFT), 34
    for index, ((name, pts), dash) in enumerate(zip(points.items(), flags, strict=True)):
        colour = PALETTE[index % len(PALETTE)]
        style = ' stroke-dasharray="7 4"' if dash or index >= len(PALETTE) else ""
        parts.append(f'<g class="series-group" data-series="{escape(name)}">')
        if pts:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(f'<polyline class="series" points="{coords}" fill="none" stroke="{colour}" '
                         f'stroke-width="2.2"{style}/>')
        parts += [f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}" stroke="#fff">'
                  f"<title>{escape(f'{name}: {x_label} = {x:.4g}, {y_label} = {y:.4g}')}</title></circle>"
                  for x, y in pts]
        parts.append("</g>")
        width = 30 + 6.6 * len(name)
        if legend_x > _LEFT and legend_x + width > _WIDTH - _RIGHT:
            legend_x, legend_y = float(_LEFT), legend_y + 16
        parts.append(f'<rect x="{legend_x:.1f}" y="{legend_y}" width="12" height="12" rx="2" fill="{colour}"/>'
                     + _text(legend_x + 17, legend_y + 10, name, anchor="start", fill=_INK))
        legend_x += width
    parts.append("</svg>")
    return "\n".join(parts)


def run_ticks(n: int, *, most: int = 10) -> list[tuple[float, str]]:
    """Ticks "#1", "#2", ... for runs 1..n, at most about `most` of them (always the first and the last)."""
    every = max(1, math.ceil(n / most))
    numbers = sorted({*range(1, n + 1, every), n}) if n else []
    return [(float(i), f"#{i}") for i in numbers]
