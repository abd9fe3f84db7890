"""Drawing without dependencies, below every other layer: PNG encoding, SVG charts and HTML building blocks.

Attacks (a printable patch), the evaluation stages (their report sections), the report and the dashboard all
draw with these; nothing here imports any other part of bastion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports each name on first access
    from bastion.render.png import encode_png, image_to_data_uri, perturbation_to_data_uri
    from bastion.render.svg import bar_chart, line_chart

__all__ = ["bar_chart", "encode_png", "image_to_data_uri", "line_chart", "perturbation_to_data_uri"]

_HOMES = {
    "bar_chart": "bastion.render.svg",
    "encode_png": "bastion.render.png",
    "image_to_data_uri": "bastion.render.png",
    "line_chart": "bastion.render.svg",
    "perturbation_to_data_uri": "bastion.render.png",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
