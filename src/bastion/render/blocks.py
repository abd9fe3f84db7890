"""The building blocks every HTML page and report section of bastion is made of.

One look (CSS), one script that reports what the browser drew, and escaping and lenient readers of report
values, so that every section (the evaluation stages', the certification page's, the detection page's)
renders the same way and stays safe: report strings are escaped, image sources must be PNG data URIs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from html import escape
from typing import Any

__all__ = [
    "CSS",
    "NORM_SYMBOLS",
    "PER_POINT_NOTE",
    "SCRIPT",
    "as_dict",
    "as_list",
    "count",
    "eps_text",
    "esc",
    "gallery_img",
    "note_html",
    "num",
    "num_or_nan",
    "per_point_text",
    "pct",
    "plain_text",
    "provenance_sections",
    "section_html",
    "settings_html",
    "table_row",
    "threat_text",
]

CSS = """
*{box-sizing:border-box} body{margin:0;background:#f4f6f8;color:#1f2933;font:15px/1.5 system-ui,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 48px} h1{font-size:26px;margin:0 0 6px}
header{border-bottom:1px solid #d9dee3;margin:0 0 20px;padding-bottom:12px} h2{font-size:19px;margin:0 0 12px}
.meta{color:#52606d;margin:0;display:flex;flex-wrap:wrap;gap:4px 22px} .meta b{color:#1f2933;font-weight:600}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:18px 20px;margin:18px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:14px}
.card,figure{border:1px solid #e1e5ea;border-radius:8px;padding:12px 16px;background:#fafbfc;margin:0}
.card .label{color:#52606d;font-size:13px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:28px;font-weight:650} .card.robust .value,.fooled{color:#c0392b;font-weight:600}
.warnings{margin:16px 0 0;padding:10px 16px 10px 36px;background:#fff4e5;border:1px solid #f0b45b;
  border-left:5px solid #e67e22;border-radius:6px} li.warning{margin:4px 0;color:#7a4100} .ok{color:#2e7d32}
table{border-collapse:collapse;width:100%;font-size:14px;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #e6e9ed;vertical-align:top}
th{background:#f7f9fa;color:#3e4c59} td.num,th.num{text-align:right} .scroll{overflow-x:auto}
code{font:12.5px monospace;background:#f1f3f5;border-radius:4px;padding:1px 5px;white-space:nowrap}
svg.chart{width:100%;max-width:820px;height:auto;display:block;margin:0 auto} .note{color:#52606d}
.scroll svg.chart{width:auto;max-width:none} /* many categories: natural size, scrolled, not squeezed */
.chips code{white-space:normal;overflow-wrap:anywhere;display:inline-block;margin:1px 0}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:14px}
.triple{display:flex;gap:16px;text-align:center;font-size:12px} th,td b{white-space:nowrap}
img.gallery-img{width:104px;height:104px;object-fit:contain;image-rendering:pixelated;display:block}
figcaption{font-size:13px;margin-top:6px} dt{color:#52606d} footer{color:#7b8794;text-align:center}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 18px;margin:0} dd{margin:0}
pre{background:#f7f9fa;border:1px solid #e1e5ea;border-radius:6px;padding:12px;overflow:auto;font-size:12.5px}
"""
# Reports what the browser really drew (for the headless-browser test, and anyone inspecting the page).
SCRIPT = """addEventListener("load", () => {
  const imgs = [...document.querySelectorAll("img")], svgs = [...document.querySelectorAll("svg")];
  const loaded = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.rendered = `images=${imgs.length};loaded=${loaded};svgs=${
    svgs.filter((s) => s.getBBox().width > 0).length}`;
});"""
NORM_SYMBOLS = {"linf": "L∞", "l2": "L2", "l1": "L1", "l0": "L0"}


def esc(value: object) -> str:
    """Escape any report value for HTML text or a quoted attribute."""
    return escape(str(value), quote=True)


def as_dict(value: object) -> dict[str, Any]:
    """Return a JSON object, or an empty one for anything else (reports are read leniently)."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """Return a JSON list, or an empty one for anything else (reports are read leniently)."""
    return value if isinstance(value, list) else []


def num(value: object) -> float | None:
    """Return `value` as a finite float, or None (missing, NaN, or not a number)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def num_or_nan(value: object) -> float:
    """Return `value` as a float for a chart, NaN (skipped) when it is not a finite number."""
    return math.nan if (number := num(value)) is None else number


def plain_text(value: object) -> str:
    """Flatten a provenance value into one line: dicts as "key value, ...", lists as JSON."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain_text(v)}" for k, v in value.items())
    return str(value) if isinstance(value, (str, int, float)) else json.dumps(value, default=str)


def pct(value: object) -> str:
    """Format a share as a percentage, "—" when it is not a number."""
    return "—" if (number := num(value)) is None else f"{number:.1%}"


def count(value: object) -> str:
    """Format a count with thousands separators, "—" when it is not a number."""
    return "—" if (n := num(value)) is None else f"{n:,.0f}" if n.is_integer() else f"{n:,.3g}"


def eps_text(value: object) -> str:
    """Format a radius, as k/255 when that is what it is (8/255 rather than 0.0313725)."""
    if (n := num(value)) is None:
        return "—"
    k = round(n * 255)
    return f"{k}/255" if len(f"{n:g}") > 5 and k > 0 and abs(n * 255 - k) < 1e-4 else f"{n:.4g}"


def threat_text(summary: dict[str, Any]) -> str:
    """Format a summary's threat model as "L∞, ε = 8/255"."""
    norm, known = str(summary.get("norm", "?")), "norm" in summary or "eps" in summary
    return f"{NORM_SYMBOLS.get(norm.lower(), norm)}, ε = {eps_text(summary.get('eps'))}" if known else "—"


def settings_html(settings: object) -> str:
    """Render an attack's or stage's settings as a row of `key=value` code chips."""
    rendered = (
        f"{k}={v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)}"
        for k, v in as_dict(settings).items()
    )
    chips = " ".join(f"<code>{esc(item)}</code>" for item in rendered)
    return f'<span class="chips">{chips}</span>' if chips else "—"


def section_html(section_id: str, title: str, body: str) -> str:
    """Wrap a body in a titled `<section>` whose id anchors it in the page."""
    return f'<section id="{section_id}"><h2>{title}</h2>{body}</section>'


def note_html(text: str) -> str:
    """A paragraph of explanatory text (already escaped by the caller)."""
    return f'<p class="note">{text}</p>'


#: The one definition of passes per point (`bastion.evaluate.result.passes_per_point`), as every caption states it.
PER_POINT_NOTE = ("Passes per point: the forward (backward) passes through the classifier, each input of a batch "
                  "counted once, divided by the number of points the evaluation ran on, in every table "
                  "(comparable with published attack costs).")


def per_point_text(per_point: dict[str, float]) -> str:
    """Passes per point as every table shows them: "forward / backward", one decimal."""
    return f"{per_point.get('forward', 0.0):,.1f} / {per_point.get('backward', 0.0):,.1f}"


def table_row(cells: list[str], tag: str) -> str:
    """Build a table row; the numeric columns (3 to 8) are right-aligned."""
    return (
        "<tr>"
        + "".join(
            f'<{tag} class="num">{c}</{tag}>' if 2 < i < 9 else f"<{tag}>{c}</{tag}>" for i, c in enumerate(cells)
        )
        + "</tr>"
    )


def gallery_img(uri: object, alt: str) -> str:
    """Build a gallery ``<img>``; anything but a PNG data URI is dropped (no network, no script URLs)."""
    ok = isinstance(uri, str) and uri.startswith("data:image/png;base64,")
    return f'<img class="gallery-img" src="{esc(uri) if ok else ""}" alt="{esc(alt)}">'


def provenance_sections(report: dict[str, Any]) -> str:
    """The provenance list and the full configuration of a report, as two sections."""
    items = "".join(
        f"<dt>{esc(key)}</dt><dd>{esc(plain_text(value))}</dd>"
        for key, value in as_dict(report.get("provenance")).items()
    )
    listing = f"<dl>{items}</dl>" if items else note_html("No provenance recorded.")
    config = json.dumps(report.get("config", {}), indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return section_html("provenance", "Provenance", listing) + section_html(
        "config", "Configuration", f"<pre>{esc(config)}</pre>"
    )


def page_html(title: str, heading: str, meta: list[tuple[str, object]], sections: list[str], footer: str = "") -> str:
    """A whole self-contained HTML5 page: inline CSS and script, a CSP that forbids any network access.

    Args:
        title: The browser tab's title (escaped here).
        heading: The page's h1 (escaped here).
        meta: (label, value) pairs shown under the heading (escaped here).
        sections: The page's sections, already rendered.
        footer: The footer's text (escaped here); empty for none.
    """
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    items = "".join(f"<span>{esc(label)} <b>{esc(value)}</b></span>" for label, value in meta)
    header = f'<header><h1>{esc(heading)}</h1><p class="meta">{items}</p></header>'
    closing = f"<footer>{esc(footer)}</footer>" if footer else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join([header, *sections, *([closing] if closing else [])])
        + f"\n</main><script>{SCRIPT}</script></body></html>\n"
    )
