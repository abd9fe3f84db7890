"""Human-readable reports: a self-contained HTML page with SVG charts and PNG images, no dependencies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.render.png import encode_png, image_to_data_uri, perturbation_to_data_uri
    from bastion.render.svg import bar_chart, line_chart
    from bastion.report.html import render_html, write_html

__all__ = [
    "bar_chart",
    "encode_png",
    "image_to_data_uri",
    "line_chart",
    "perturbation_to_data_uri",
    "render_html",
    "write_html",
]

_HOMES = {
    # The render helpers are re-exported from their own lazy package, which knows where each one lives.
    "bar_chart": "bastion.render",
    "encode_png": "bastion.render",
    "image_to_data_uri": "bastion.render",
    "line_chart": "bastion.render",
    "perturbation_to_data_uri": "bastion.render",
    "render_html": "bastion.report.html",
    "write_html": "bastion.report.html",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
