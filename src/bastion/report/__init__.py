"""Human-readable reports: a self-contained HTML page with SVG charts and PNG images, no dependencies."""

from __future__ import annotations

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
