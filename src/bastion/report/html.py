"""The evaluation report as one self-contained HTML page, rendered from the report dictionary (report.json).

CSS, SVG charts and PNG data URIs are inline and a Content-Security-Policy forbids network access, so the page
works offline from ``file://``. Report strings are escaped; image sources must be ``data:image/png`` URIs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from html import escape
from pathlib import Path
from typing import Any

from bastion._io import write_atomic
from bastion.report.svg import bar_chart, line_chart

__all__ = ["render_html", "write_html"]

_CSS = """
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
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:14px}
.triple{display:flex;gap:16px;text-align:center;font-size:12px} th,td b{white-space:nowrap}
img.gallery-img{width:104px;height:104px;object-fit:contain;image-rendering:pixelated;display:block}
figcaption{font-size:13px;margin-top:6px} dt{color:#52606d} footer{color:#7b8794;text-align:center}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 18px;margin:0} dd{margin:0}
pre{background:#f7f9fa;border:1px solid #e1e5ea;border-radius:6px;padding:12px;overflow:auto;font-size:12.5px}
"""
# Reports what the browser really drew (for the headless-browser test, and anyone inspecting the page).
_SCRIPT = """addEventListener("load", () => {
  const imgs = [...document.querySelectorAll("img")], svgs = [...document.querySelectorAll("svg")];
  const loaded = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.rendered = `images=${imgs.length};loaded=${loaded};svgs=${
    svgs.filter((s) => s.getBBox().width > 0).length}`;
});"""
_NORMS = {"linf": "L∞", "l2": "L2", "l1": "L1", "l0": "L0"}


def _e(value: object) -> str:
    """Escape any report value for HTML text or a quoted attribute."""
    return escape(str(value), quote=True)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _records(value: object) -> list[Any]:
    """Return a JSON list, or an empty one for anything else (reports are read leniently)."""
    return value if isinstance(value, list) else []


def _num(value: object) -> float | None:
    """Return `value` as a finite float, or None (missing, NaN, or not a number)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _nan(value: object) -> float:
    """Return `value` as a float for a chart, NaN (skipped) when it is not a finite number."""
    return math.nan if (number := _num(value)) is None else number


def _plain(value: object) -> str:
    """Flatten a provenance value into one line: dicts as "key value, ...", lists as JSON."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return str(value) if isinstance(value, (str, int, float)) else json.dumps(value, default=str)


def _pct(value: object) -> str:
    return "—" if (number := _num(value)) is None else f"{number:.1%}"


def _count(value: object) -> str:
    return "—" if (n := _num(value)) is None else f"{n:,.0f}" if n.is_integer() else f"{n:,.3g}"


def _eps(value: object) -> str:
    """Format a radius, as k/255 when that is what it is (8/255 rather than 0.0313725)."""
    if (n := _num(value)) is None:
        return "—"
    k = round(n * 255)
    return f"{k}/255" if len(f"{n:g}") > 5 and k > 0 and abs(n * 255 - k) < 1e-4 else f"{n:.4g}"


def _threat(summary: dict[str, Any]) -> str:
    norm, known = str(summary.get("norm", "?")), "norm" in summary or "eps" in summary
    return f"{_NORMS.get(norm.lower(), norm)}, ε = {_eps(summary.get('eps'))}" if known else "—"


def _settings(settings: object) -> str:
    rendered = (f"{k}={v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)}"
                for k, v in _dict(settings).items())
    return " ".join(f"<code>{_e(item)}</code>" for item in rendered) or "—"


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{title}</h2>{body}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _header(report: dict[str, Any], summary: dict[str, Any]) -> str:
    get, date = summary.get, str(report.get("created_at", "—")).replace("T", " ")
    meta = [("model", get("model", "—")), ("data", get("data", "—")), ("threat model", _threat(summary)),
            ("date", date), ("run", report.get("run_id", "—"))]
    items = "".join(f"<span>{_e(name)} <b>{_e(value)}</b></span>" for name, value in meta)
    return f'<header><h1>bastion robustness report</h1><p class="meta">{items}</p></header>'


def _summary(report: dict[str, Any], summary: dict[str, Any]) -> str:
    g = summary.get
    cards = [("clean accuracy", _pct(g("clean_accuracy"))), ("robust accuracy", _pct(g("robust_accuracy"))),
             ("threat model", _threat(summary)), ("samples", _count(g("n_samples")))]
    html = "".join(f'<div class="card {label.split()[0]}"><div class="label">{_e(label)}</div>'
                   f'<div class="value">{_e(value)}</div></div>' for label, value in cards)
    items = "".join(f'<li class="warning">{_e(w)}</li>' for w in _records(report.get("warnings")))
    notes = (f'<ul class="warnings" role="alert" aria-label="warnings">{items}</ul>' if items
             else '<p class="ok">No warnings: the evaluation passed its sanity checks.</p>')
    return _section("summary", "Summary", f'<div class="cards">{html}</div>{notes}')


def _row(cells: list[str], tag: str) -> str:
    """Build a table row; the numeric columns (3 to 8) are right-aligned."""
    return "<tr>" + "".join(f'<{tag} class="num">{c}</{tag}>' if 2 < i < 9 else f"<{tag}>{c}</{tag}>"
                            for i, c in enumerate(cells)) + "</tr>"


def _attacks(report: dict[str, Any]) -> str:
    standalone = _dict(report.get("robust_accuracy_standalone"))
    rows = []
    for index, attack in enumerate(map(_dict, _records(report.get("attacks"))), start=1):
        alone = attack.get("standalone_accuracy", standalone.get(str(attack.get("name"))))
        passes, seconds = _dict(attack.get("passes")), _num(attack.get("seconds"))
        samples = f"{_count(passes.get('forward_samples'))} / {_count(passes.get('backward_samples'))}"
        fwd_bwd = f"{_count(passes.get('forward'))} / {_count(passes.get('backward'))}"
        rows.append(_row([str(index), f"<b>{_e(attack.get('name', '?'))}</b>", _e(attack.get("role", "")),
                          _pct(attack.get("robust_accuracy")), _pct(alone), _count(attack.get("attacked")),
                          _count(attack.get("fooled")), f'<span title="samples {samples}">{fwd_bwd}</span>',
                          "—" if seconds is None else f"{seconds:.2f}", _settings(attack.get("settings"))],
                         "td"))
    header = _row(["#", "attack", "role", "robust acc. after", "robust acc. alone", "attacked", "fooled",
                   "passes fwd / bwd", "seconds", "settings"], "th")
    body = "".join(rows) or '<tr><td colspan="10">No attacks in this report.</td></tr>'
    intro = _note("Run as a cascade: each attack only attacks the points still robust, so the robust "
                  "accuracy after it is the worst case over it and every attack before it.")
    table = f'<div class="scroll"><table><thead>{header}</thead><tbody>{body}</tbody></table></div>'
    return _section("attacks", "Attacks", intro + table)


def _curve(report: dict[str, Any], summary: dict[str, Any]) -> str:
    points = sorted((p for p in map(_dict, _records(report.get("curve"))) if _num(p.get("eps")) is not None),
                    key=lambda p: float(p["eps"]))
    if not points:
        return _section("robustness-curve", "Robustness curve", _note("No curve was computed."))
    eps, series = _num(summary.get("eps")), {"robust accuracy": [_nan(p.get("accuracy")) for p in points]}
    profile = _dict(report.get("min_norm"))
    read_off = {_num(p.get("eps")): _nan(p.get("accuracy")) for p in map(_dict, _records(profile.get("curve")))}
    if read_off and all(_num(p["eps"]) in read_off for p in points):
        series[f"read off {profile.get('attack', 'minimal')} norms"] = [read_off[_num(p["eps"])] for p in points]
    chart = line_chart([float(p["eps"]) for p in points], series,
                       x_label="ε (perturbation budget)", y_label="accuracy",
                       title="Robust accuracy against ε", element_id="curve", x_marker=eps,
                       x_marker_label=f"threat model ε = {_eps(eps)}")
    settings = _dict(report.get("curve_settings"))
    note = f"The dashed line marks the threat model’s ε = {_e(_eps(eps))}."
    note += f" Curve attack: {_settings(settings)}" if settings else ""
    if profile.get("median") is not None:
        quantiles = ", ".join(f"{_e(k)} {_num(v):.4g}" for k, v in _dict(profile.get("quantiles")).items())
        note += (f" Minimal adversarial norms found by {_e(profile.get('attack'))} on {_count(profile.get('found'))} "
                 f"of {_count(profile.get('attacked'))} points: median {_num(profile['median']):.4g} ({quantiles}).")
    return _section("robustness-curve", "Robustness curve", chart + _note(note))


def _per_class(report: dict[str, Any]) -> str:
    classes = list(map(_dict, _records(report.get("per_class"))))
    if not classes:
        return _section("per-class-accuracy", "Per-class accuracy", _note("No per-class results."))
    floor = _num(report.get("class_floor"))
    labels = [str(c.get("name", c.get("label", "?"))) for c in classes]
    groups = {key: [_nan(c.get(f"{key}_accuracy")) for c in classes] for key in ("clean", "robust")}
    chart = bar_chart(labels, groups, y_label="accuracy", title="Clean and robust accuracy per class",
                      x_label="class", highlight=[bool(c.get("flagged")) for c in classes],
                      element_id="per-class", y_marker=floor, y_marker_label=f"floor {_pct(floor)}")
    flagged = ", ".join(label for label, c in zip(labels, classes, strict=True) if c.get("flagged"))
    note = (f"Classes with robust accuracy below the floor of {_e(_pct(floor))} are flagged: "
            f"<b>{_e(flagged)}</b>." if flagged else f"No class is below the floor of {_e(_pct(floor))}.")
    chart = f'<div class="scroll">{chart}</div>' if len(classes) > 24 else chart
    return _section("per-class-accuracy", "Per-class accuracy", chart + _note(note))


def _img(uri: object, alt: str) -> str:
    """Build a gallery ``<img>``; anything but a PNG data URI is dropped (no network, no script URLs)."""
    ok = isinstance(uri, str) and uri.startswith("data:image/png;base64,")
    return f'<img class="gallery-img" src="{_e(uri) if ok else ""}" alt="{_e(alt)}">'


def _figure(item: dict[str, Any], names: dict[Any, Any]) -> str:
    """Build one gallery example: clean, adversarial and amplified perturbation images with a caption."""

    def label(value: object) -> str:
        name = names.get(value)
        return f"{value} ({name})" if name not in (None, str(value)) else str(value)

    views = (("clean_png", "clean"), ("adversarial_png", "adversarial"), ("perturbation_png", "perturbation"))
    images = "".join(f"<div>{_img(item.get(key), f'{name} image')}{_e(name)}</div>" for key, name in views)
    norm = _num(item.get("norm"))
    caption = (f"#{_e(item.get('index', '?'))} · true <b>{_e(label(item.get('label')))}</b> · "
               f"clean → {_e(label(item.get('clean_prediction')))} · adversarial → "
               f'<span class="fooled">{_e(label(item.get("adversarial_prediction")))}</span><br>'
               f"attack {_e(item.get('attack', '?'))} · perturbation norm "
               f"{'—' if norm is None else f'{norm:.4g}'}")
    return (f'<figure class="example"><div class="triple">{images}</div>'
            f"<figcaption>{caption}</figcaption></figure>")


def _gallery(report: dict[str, Any]) -> str:
    names = {c.get("label"): c.get("name") for c in map(_dict, _records(report.get("per_class")))}
    figures = "".join(_figure(item, names) for item in map(_dict, _records(report.get("gallery"))))
    intro = _note("Clean input, adversarial input, and the perturbation amplified (mid grey = unchanged).")
    return _section("gallery", "Adversarial examples",
                    intro + (f'<div class="gallery">{figures}</div>' if figures else _note("No examples.")))


def _provenance(report: dict[str, Any]) -> str:
    items = "".join(f"<dt>{_e(key)}</dt><dd>{_e(_plain(value))}</dd>"
                    for key, value in _dict(report.get("provenance")).items())
    listing = f"<dl>{items}</dl>" if items else _note("No provenance recorded.")
    config = json.dumps(report.get("config", {}), indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return (_section("provenance", "Provenance", listing)
            + _section("config", "Configuration", f"<pre>{_e(config)}</pre>"))


def _certified(report: dict[str, Any]) -> list[str]:
    """The randomized-smoothing section, when the evaluation ran with --certify."""
    from bastion.report.certify_html import certify_section  # imports this module: import at call time

    return [certify_section(_dict(report["certify"]))] if _dict(report.get("certify")) else []


def _masking(report: dict[str, Any]) -> list[str]:
    """The gradient-masking verdict and the ensemble's members, when the report has them."""
    from bastion.report.verdict_html import masking_sections  # imports this module: import at call time

    return masking_sections(report)


def _extended(report: dict[str, Any]) -> list[str]:
    """The sections of the extended suite (patch, spatial, corruptions, ...), when it ran."""
    from bastion.report.extended_html import extended_sections  # imports this module: import at call time

    return extended_sections(_dict(report["extended"])) if _dict(report.get("extended")) else []


def _detection(report: dict[str, Any]) -> list[str]:
    """The run-time detectors' section, when the evaluation ran them."""
    from bastion.detect.report_html import detection_section_html  # imports this module: import at call time

    return [detection_section_html(_dict(report["detection"]))] if _dict(report.get("detection")) else []


def render_html(report: dict[str, Any]) -> str:
    """Render a report dictionary (the content of report.json) as one self-contained HTML5 page.

    Missing optional keys render as "—" or a short note, so partial reports still produce a page.

    Args:
        report: The report, as written by the evaluation pipeline (schema_version 1).

    Returns:
        The HTML text.
    """
    summary = _dict(report.get("summary"))
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    version = _dict(_dict(report.get("provenance")).get("versions")).get("bastion", "")
    body = [_header(report, summary), _summary(report, summary), *_masking(report), _attacks(report),
            _curve(report, summary), _per_class(report), *_certified(report), *_extended(report), *_detection(report),
            _gallery(report),
            _provenance(report),
            f"<footer>bastion {_e(version)} · report schema {_e(report.get('schema_version', '?'))}</footer>"]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>bastion robustness report — {_e(summary.get('model', 'model'))}</title>"
            f"<style>{_CSS}</style></head>\n<body><main>\n" + "\n".join(body)
            + f"\n</main><script>{_SCRIPT}</script></body></html>\n")


def write_html(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Render `report` and write it to `path` atomically (a temporary file, then a rename).

    Args:
        report: The report dictionary.
        path: Destination file; its parent directory is created if needed.

    Returns:
        The path written.
    """
    return write_atomic(path, render_html(report))
