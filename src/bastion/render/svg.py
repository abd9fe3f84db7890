"""Standalone SVG charts for the report: a line chart and a grouped bar chart, as ``<svg>`` strings.

Each chart has axes, ticks, labels, a title, a legend and a ``<title>`` tooltip on every point or bar. Text is
escaped, NaN values are skipped, and empty input draws the axes with a "no data" note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from html import escape
from typing import TypeGuard

__all__ = ["PALETTE", "WARNING_PALETTE", "bar_chart", "line_chart"]

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#9d755d", "#e45756", "#79706e")
WARNING_PALETTE = ("#f1a9a0", "#b71c1c", "#e57373", "#7f0000")
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
_INK, _MUTED, _GRID = "#1f2933", "#52606d", "#e4e7eb"
_DASH = ' stroke-dasharray="6 4" stroke-width="1.4"'
_HALO = ' paint-order="stroke" stroke="#ffffff" stroke-width="4" stroke-linejoin="round"'
_CHAR_WIDTH = 6.6  # rough width of one 12px character, for layout without a font engine


@dataclass(frozen=True)
class _Frame:
    """Plot geometry: the SVG size, the plot rectangle inside it, and the data domain it shows."""

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    x_lo: float = 0.0
    x_hi: float = 1.0
    y_lo: float = 0.0
    y_hi: float = 1.0

    def sx(self, value: float) -> float:
        """Map a data x to an SVG x coordinate."""
        fraction = (value - self.x_lo) / (self.x_hi - self.x_lo)
        return self.left + fraction * (self.width - self.left - self.right)

    def sy(self, value: float) -> float:
        """Map a data y (clamped to the domain) to an SVG y coordinate."""
        fraction = (min(max(value, self.y_lo), self.y_hi) - self.y_lo) / (self.y_hi - self.y_lo)
        return self.height - self.bottom - fraction * (self.height - self.top - self.bottom)


def _check_lengths(kind: str, values: Mapping[str, Sized], n: int, of: str) -> None:
    """Raise ValueError unless every list in `values` has `n` entries."""
    for name, entries in values.items():
        if len(entries) != n:
            raise ValueError(f"{kind} {name!r} has {len(entries)} values but there are {n} {of}")


def _finite(value: object) -> TypeGuard[float]:
    """Whether `value` is a finite real number (NaN, infinities, None and strings are not)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _fmt(value: float) -> str:
    """Format a tick or tooltip number compactly, without float noise (0.30000000000000004 -> 0.3)."""
    text = f"{round(value, 9):.4g}"
    return "0" if text == "-0" else text


def _ticks(lo: float, hi: float, *, extend: bool, target: int = 5) -> tuple[float, float, list[float]]:
    """Choose about `target` round ticks for [lo, hi]; with `extend`, widen the domain to whole ticks."""
    if not hi > lo:
        lo, hi = (0.0, 2.0 * lo) if lo > 0 else (2.0 * lo, 0.0) if lo < 0 else (0.0, 1.0)
    raw = (hi - lo) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw * (1 - 1e-9))
    if extend:
        lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    first = math.ceil(lo / step - 1e-9)
    ticks = [i * step for i in range(first, math.floor(hi / step + 1e-9) + 1)]
    return lo, hi, ticks


def _text(x: float, y: float, content: str, *, size: int = 12, anchor: str = "middle", fill: str = _MUTED,
          extra: str = "") -> str:
    """Build one escaped ``<text>`` element."""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f"{escape(content)}</text>")


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, extra: str = "") -> str:
    """Build one ``<line>`` element."""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{extra}/>'


def _y_domain(values: list[float], y_range: tuple[float, float] | None) -> tuple[float, float, list[float]]:
    """Return the y domain and ticks: `y_range` as given, or fitted to `values` (and zero) when None."""
    if y_range is None:
        return _ticks(min(values + [0.0]), max(values + [0.0]), extend=True)
    return _ticks(y_range[0], y_range[1], extend=False)


def _no_data(frame: _Frame) -> str:
    """Write a centred note on a chart without any finite value."""
    return _text((frame.left + frame.width - frame.right) / 2, (frame.top + frame.height - frame.bottom) / 2,
                 "no data", size=14, extra=' class="no-data"')


def _open(frame: _Frame, kind: str, title: str, element_id: str | None) -> list[str]:
    """Start an SVG: root element, accessible title, white background and the visible chart title."""
    id_attr = f' id="{escape(element_id)}"' if element_id else ""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg"{id_attr} class="chart {kind}" role="img" '
        f'aria-label="{escape(title)}" viewBox="0 0 {frame.width:.0f} {frame.height:.0f}" '
        f'width="{frame.width:.0f}" height="{frame.height:.0f}" font-family="{escape(_FONT)}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="background" width="{frame.width:.0f}" height="{frame.height:.0f}" fill="#ffffff"/>',
        _text(frame.left, 22, title, size=15, anchor="start", fill=_INK, extra=' font-weight="600"'),
    ]


def _y_axis(frame: _Frame, ticks: list[float], label: str) -> list[str]:
    """Horizontal grid lines with tick labels, the y axis line and its rotated label."""
    x0, x1, middle = frame.left, frame.width - frame.right, (frame.top + frame.height - frame.bottom) / 2
    grid = [_line(x0, y, x1, y, _GRID) + _text(x0 - 8, y + 4, _fmt(t), anchor="end")
            for t, y in ((t, frame.sy(t)) for t in ticks)]
    turn = f' transform="rotate(-90 18 {middle:.1f})"'
    return ['<g class="y-axis">', *grid, _line(x0, frame.top, x0, frame.height - frame.bottom, _MUTED),
            _text(18, middle, label, size=13, fill=_INK, extra=turn), "</g>"]


def _x_axis(frame: _Frame, label: str) -> list[str]:
    """Open the x axis group: the axis line along the bottom of the plot and the label under it."""
    y, middle = frame.height - frame.bottom, (frame.left + frame.width - frame.right) / 2
    return ['<g class="x-axis">', _line(frame.left, y, frame.width - frame.right, y, _MUTED),
            _text(middle, frame.height - 12, label, size=13, fill=_INK)]


def _legend(frame: _Frame, items: Sequence[tuple[str, str]], dashed: str = "") -> list[str]:
    """Draw a one-row legend, right-aligned under the title; `dashed` names a marker line, drawn last."""
    entries = [*items, (dashed, "")] if dashed else list(items)
    widths = [26 + len(name) * _CHAR_WIDTH for name, _ in entries]
    x = max(frame.left, frame.width - frame.right - sum(widths))
    parts = ['<g class="legend">']
    for (name, colour), width in zip(entries, widths, strict=True):
        swatch = (f'<rect x="{x:.1f}" y="34" width="12" height="12" rx="2" fill="{colour}"/>' if colour
                  else _line(x - 2, 40, x + 14, 40, WARNING_PALETTE[1], _DASH))
        parts.append(swatch + _text(x + 17, 44, name, anchor="start", fill=_INK))
        x += width
    parts.append("</g>")
    return parts


def _marker_label_y(frame: _Frame, xs: Sequence[float], series: Mapping[str, Sequence[float]], left: float,
                    right: float) -> float:
    """The height of a marker's label: the top of the plot unless a line runs there under the label.

    The label spans `left`..`right` (pixels); the lines' points under that span decide whether the
    top or the bottom of the plot is clear (top when both are taken: the label has a halo).
    """
    top, bottom = frame.top + 12, frame.sy(frame.y_lo) - 8
    under = [frame.sy(float(ys[i])) for ys in series.values() for i, x in enumerate(xs)
             if i < len(ys) and _finite(x) and _finite(ys[i]) and left - 10 <= frame.sx(float(x)) <= right + 10]
    if not any(abs(y - top) < 18 for y in under):
        return top
    return bottom if not any(abs(y - bottom) < 18 for y in under) else top


def line_chart(xs: Sequence[float], series: dict[str, list[float]], *, x_label: str, y_label: str,
               title: str, y_range: tuple[float, float] | None = (0.0, 1.0), element_id: str | None = None,
               x_marker: float | None = None, x_marker_label: str = "") -> str:
    """Draw one or more series over a shared numeric x axis (e.g. robust accuracy against eps).

    Each series is a ``<polyline class="series">`` (split at NaN values) with a ``<circle>`` and tooltip
    per finite point.

    Args:
        xs: The x values, shared by every series.
        series: Series name -> y values, each as long as `xs`.
        x_label: Label under the x axis.
        y_label: Label beside the y axis.
        title: Chart title (also the accessible name).
        y_range: Fixed y domain; values outside are drawn at the edge. None fits the data.
        element_id: The ``id`` of the ``<svg>`` element, if any.
        x_marker: An x value to mark with a dashed vertical line (e.g. the threat model's eps).
        x_marker_label: Text written beside the marker.

    Returns:
        The ``<svg>`` markup.

    Raises:
        ValueError: If a series is not as long as `xs`.
    """
    _check_lengths("series", series, len(xs), "x values")
    finite_x = [float(x) for x in xs if _finite(x)] + ([float(x_marker)] if _finite(x_marker) else [])
    finite_y = [float(y) for ys in series.values() for y in ys if _finite(y)]
    x_lo, x_hi, x_ticks = _ticks(min(finite_x, default=0.0), max(finite_x, default=1.0), extend=True)
    y_lo, y_hi, y_ticks = _y_domain(finite_y, y_range)
    frame = _Frame(640, 380, left=64, right=24, top=62, bottom=58, x_lo=x_lo, x_hi=x_hi, y_lo=y_lo, y_hi=y_hi)
    parts, base = _open(frame, "line-chart", title, element_id), frame.sy(y_lo)
    parts += _y_axis(frame, y_ticks, y_label) + _x_axis(frame, x_label)
    parts += [_line(frame.sx(t), base, frame.sx(t), base + 5, _MUTED) + _text(frame.sx(t), base + 19, _fmt(t))
              for t in x_ticks] + ["</g>"]
    if _finite(x_marker):
        x = frame.sx(float(x_marker))
        near_right = x > frame.width - frame.right - 120
        width = 6.5 * len(x_marker_label)
        span = (x - 6 - width, x) if near_right else (x, x + 6 + width)
        label_y = _marker_label_y(frame, xs, series, *span)
        parts.append('<g class="marker">' + _line(x, frame.top, x, base, _INK, _DASH)
                     + _text(x - 6 if near_right else x + 6, label_y, x_marker_label,
                             anchor="end" if near_right else "start", fill=_INK, extra=_HALO) + "</g>")
    parts += [] if finite_y else [_no_data(frame)]
    for index, (name, ys) in enumerate(series.items()):
        colour, points, segment = PALETTE[index % len(PALETTE)], [], []
        parts.append(f'<g class="series-group" data-series="{escape(name)}">')
        for x, y in [*zip(xs, ys, strict=True), (math.nan, math.nan)]:
            if _finite(x) and _finite(y):
                points.append((float(x), float(y)))
                segment.append(f"{frame.sx(float(x)):.1f},{frame.sy(float(y)):.1f}")
            elif segment:
                parts.append(f'<polyline class="series" points="{" ".join(segment)}" fill="none" '
                             f'stroke="{colour}" stroke-width="2.2" stroke-linejoin="round"/>')
                segment = []
        for x, y in points:
            tip = f"{name}: {x_label} = {_fmt(x)}, {y_label} = {_fmt(y)}"
            parts.append(f'<circle class="point" cx="{frame.sx(x):.1f}" cy="{frame.sy(y):.1f}" r="4" '
                         f'fill="{colour}" stroke="#ffffff" stroke-width="1.5"><title>{escape(tip)}</title>'
                         "</circle>")
        parts.append("</g>")
    parts += _legend(frame, [(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(series)])
    return "\n".join([*parts, "</svg>"])


def bar_chart(labels: list[str], groups: dict[str, list[float]], *, y_label: str, title: str,
              y_range: tuple[float, float] | None = (0.0, 1.0), highlight: list[bool] | None = None,
              element_id: str | None = None, x_label: str = "", y_marker: float | None = None,
              y_marker_label: str = "") -> str:
    """Draw grouped bars: one cluster per label, one bar per group (e.g. clean and robust accuracy per class).

    Bars are ``<rect class="bar">`` with a tooltip each; NaN values leave a gap. Highlighted categories
    are drawn in the warning palette on a tinted band, and their label is prefixed with a warning sign.

    Args:
        labels: Category labels along the x axis.
        groups: Group name -> one value per label.
        y_label: Label beside the y axis.
        title: Chart title (also the accessible name).
        y_range: Fixed y domain; values outside are drawn at the edge. None fits the data (and zero).
        highlight: One flag per label; True marks the category (e.g. below a per-class floor).
        element_id: The ``id`` of the ``<svg>`` element, if any.
        x_label: Label under the x axis.
        y_marker: A y value to mark with a dashed horizontal line (e.g. a per-class accuracy floor).
        y_marker_label: The marker's name in the legend.

    Returns:
        The ``<svg>`` markup.

    Raises:
        ValueError: If a group or `highlight` is not as long as `labels`.
    """
    flags = list(highlight) if highlight is not None else [False] * len(labels)
    _check_lengths("group", {**groups, "(highlight)": flags}, len(labels), "labels")
    shown = [("⚠ " if flag else "") + (label if len(label) <= 18 else label[:17] + "…")
             for label, flag in zip(labels, flags, strict=True)]
    n_groups = max(len(groups), 1)
    band = max(14.0 * n_groups + 14.0, 560.0 / max(len(labels), 1))
    longest = max((len(text) for text in shown), default=0) * _CHAR_WIDTH
    rotate = longest > band - 6
    bottom = 34 + (longest * 0.64 if rotate else 0) + (22 if x_label else 0)
    finite_y = [float(v) for values in groups.values() for v in values if _finite(v)]
    y_lo, y_hi, y_ticks = _y_domain(finite_y, y_range)
    left = max(64.0, longest * 0.77 - band / 2 + 8) if rotate else 64.0  # room for the first slanted label
    frame = _Frame(left + 24 + band * max(len(labels), 1), 320 + bottom, left=left, right=24, top=62,
                   bottom=bottom, y_lo=y_lo, y_hi=y_hi)
    parts, base = _open(frame, "bar-chart", title, element_id), frame.sy(y_lo)
    parts += [f'<rect class="flag-band" x="{frame.left + index * band:.1f}" y="{frame.top:.1f}" '
              f'width="{band:.1f}" height="{base - frame.top:.1f}" fill="#fdecea"/>'
              for index, flag in enumerate(flags) if flag]
    parts += _y_axis(frame, y_ticks, y_label)
    bar_width = (band - 12.0) / n_groups
    zero = frame.sy(max(min(0.0, y_hi), y_lo))
    for index, (label, flag) in enumerate(zip(labels, flags, strict=True)):
        parts.append(f'<g class="category{" flagged" if flag else ""}" data-label="{escape(label)}">')
        for group_index, (name, values) in enumerate(groups.items()):
            value, palette = values[index], WARNING_PALETTE if flag else PALETTE
            if not _finite(value):
                continue
            colour = palette[group_index % len(palette)]
            x = frame.left + index * band + 6.0 + group_index * bar_width
            top, bottom_y = sorted((frame.sy(float(value)), zero))
            tip = f"{label}{' (flagged)' if flag else ''}: {name} = {_fmt(float(value))}"
            parts.append(f'<rect class="bar{" flagged" if flag else ""}" x="{x + 1:.1f}" y="{top:.1f}" '
                         f'width="{max(bar_width - 2, 1):.1f}" height="{max(bottom_y - top, 0.5):.1f}" '
                         f'fill="{colour}"><title>{escape(tip)}</title></rect>')
        parts.append("</g>")
    parts += _x_axis(frame, x_label)
    for index, (text, flag) in enumerate(zip(shown, flags, strict=True)):
        x = frame.left + (index + 0.5) * band
        style = ' font-weight="700" class="flagged-label"' if flag else ""
        if rotate:
            style += f' transform="rotate(-40 {x:.1f} {base + 16:.1f})"'
        parts.append(_text(x, base + 16, text, anchor="end" if rotate else "middle",
                           fill=WARNING_PALETTE[1] if flag else _MUTED, extra=style))
    parts.append("</g>")
    if _finite(y_marker):
        y = frame.sy(float(y_marker))
        rule = _line(frame.left, y, frame.width - frame.right, y, WARNING_PALETTE[1], _DASH)
        parts.append(f'<g class="marker">{rule}<title>{escape(y_marker_label)}</title></g>')
    parts += [] if finite_y else [_no_data(frame)]
    legend = [(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(groups)]
    legend += [("flagged", WARNING_PALETTE[1])] if any(flags) else []
    parts += _legend(frame, legend, dashed=y_marker_label if _finite(y_marker) else "")
    return "\n".join([*parts, "</svg>"])
