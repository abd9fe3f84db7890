"""The standalone pages of `bastion certify` and `bastion detect`: one stage's section on a page of its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bastion._io import write_atomic
from bastion.evaluate.stages.certify_html import certify_section
from bastion.evaluate.stages.detection_html import detection_section_html
from bastion.render.blocks import as_dict, page_html, provenance_sections

__all__ = ["render_certify_html", "render_detection_html", "write_certify_html"]


def render_certify_html(report: dict[str, Any]) -> str:
    """Render certify.json as one self-contained HTML page (inline CSS and SVG, no network access)."""
    provenance = as_dict(report.get("provenance"))
    model = as_dict(provenance.get("model")).get("spec", "model")
    data = as_dict(provenance.get("data")).get("spec", "data")
    meta = [("model", model), ("data", data), ("date", report.get("created_at", "—"))]
    sections = [certify_section(report),
                provenance_sections({"provenance": provenance, "config": report.get("settings")})]
    return page_html(f"bastion certification report — {model}", "bastion certification report", meta, sections)


def write_certify_html(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Render certify.json's content and write it to `path` atomically."""
    return write_atomic(path, render_certify_html(report))


def render_detection_html(report: dict[str, Any]) -> str:
    """Render detection.json (`bastion detect`) as one self-contained HTML page."""
    provenance = as_dict(report.get("provenance"))
    model, data = provenance.get("model", "model"), provenance.get("data", "data")
    meta = [("model", model), ("data", data), ("date", report.get("created_at", "—"))]
    return page_html(f"bastion detection report — {model}", "bastion detection report", meta,
                     [detection_section_html(as_dict(report.get("detection")))])
