"""The dashboard: a static, self-contained site of the run history (one index.html, inline SVG, no network).

Per model and threat model: clean and robust accuracy over the runs (the trend over checkpoints),
per-class robust accuracy over the runs, and a table of the runs linking to each one's own report
(copied into the site, so the folder can be published or uploaded as a CI artifact as it is).
Above them, the accuracy-vs-eps curves of two runs overlaid.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import partial
from html import escape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bastion._io import write_atomic
from bastion.errors import InputError
from bastion.evaluate.report_schema import curve_rows
from bastion.history.charts import overlay_chart, run_ticks
from bastion.history.record import RunRecord, per_class_robust
from bastion.history.store import RunStore

__all__ = ["build_site", "make_server", "render_dashboard"]

_KIND_ORDER = {"evaluate": 0, "certify": 1, "train": 2}
_CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#1f2933}
h1{margin-bottom:0}.sub{color:#52606d;margin-top:2px}section{margin:28px 0;border-top:1px solid #e4e7eb}
table{border-collapse:collapse;font-size:13px;margin-top:8px}th,td{text-align:left;padding:3px 9px;
border-bottom:1px solid #e4e7eb}td.num{text-align:right;font-variant-numeric:tabular-nums}
.fail{color:#b71c1c;font-weight:600}.pass{color:#2e7d32}.charts{display:flex;flex-wrap:wrap;gap:12px}
svg{max-width:100%;height:auto}nav a{margin-right:14px}code{font-size:12px}"""


def _slug(*parts: str) -> str:
    text = " ".join(parts)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] + "-" + hashlib.sha1(text.encode()).hexdigest()[:6]


def _groups(runs: Sequence[RunRecord]) -> list[tuple[tuple[str, str, str], list[RunRecord]]]:
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for run in runs:
        groups.setdefault((run.kind, run.model, run.threat), []).append(run)
    return sorted(groups.items(), key=lambda item: (item[0][1], _KIND_ORDER.get(item[0][0], 9), item[0][2]))


def _curve(run: RunRecord) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for point in curve_rows(run.result):  # report.json of any schema version
        if isinstance(point.get("eps"), (int, float)) and isinstance(point.get("accuracy"), (int, float)):
            xs.append(float(point["eps"]))
            ys.append(float(point["accuracy"]))
    return xs, ys


def _overlay_pair(runs: Sequence[RunRecord]) -> tuple[RunRecord, RunRecord] | None:
    """The latest run with a curve and the latest earlier one under the same threat model (same model first).

    Curves under different threat models (L2 eps=1 and Linf eps=0.3) share no x axis: never overlaid.
    """
    with_curve = [r for r in runs if r.kind == "evaluate" and _curve(r)[0]]
    if len(with_curve) < 2:
        return None
    latest = with_curve[-1]
    same_threat = [r for r in with_curve[:-1] if r.threat == latest.threat and r.norm == latest.norm]
    same_model = [r for r in same_threat if r.model == latest.model]
    earlier = same_model or same_threat
    return (earlier[-1], latest) if earlier else None


def _single_run_chart(kind: str, run: RunRecord, slug: str) -> str | None:
    """For a model with one run, a chart of that run (its curve, radii or epochs) instead of a one-point trend."""
    curves: dict[str, tuple[Sequence[float], Sequence[float]]] = {}
    if kind == "evaluate" and _curve(run)[0]:
        curves, x_label, title = {"robust accuracy": _curve(run)}, "eps", f"Accuracy against eps ({run.threat})"
    elif kind == "certify":
        radii = sorted((float(k.partition("@")[2]), v) for k, v in run.metrics.items()
                       if k.startswith("certified_accuracy@"))
        curves = {"certified accuracy": ([r for r, _ in radii], [v for _, v in radii])} if radii else {}
        x_label, title = "L2 radius", "Certified accuracy against radius"
    else:
        rows = [row for row in run.result.get("history") or [] if isinstance(row, dict) and "epoch" in row]
        for key, label in (("val_clean", "held-out clean"), ("val_robust", "held-out PGD")):
            if any(key in row for row in rows):
                curves[label] = ([float(row["epoch"]) for row in rows], [row.get(key, math.nan) for row in rows])
        x_label, title = "epoch", "Held-out accuracy during training"
    if not curves:
        return None
    return overlay_chart(curves, title=title + " (one run so far)", x_label=x_label, y_label="accuracy",
                         element_id=f"single-{slug}")


def _pct(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.2%}"


def _trend_series(kind: str, runs: Sequence[RunRecord]) -> dict[str, list[float]]:
    if kind == "certify":
        keys = sorted({k for r in runs for k in r.metrics if k.startswith("certified_accuracy@")},
                      key=lambda k: float(k.partition("@")[2]))
        names = {k: "certified at r=" + k.partition("@")[2] for k in keys}
    else:
        names = {"clean_accuracy": "clean", "robust_accuracy": "robust"}
    return {label: [r.metrics.get(key, math.nan) for r in runs] for key, label in names.items()
            if any(key in r.metrics for r in runs)}


def _section(key: tuple[str, str, str], runs: list[RunRecord], links: dict[str, str]) -> str:
    kind, model, threat = key
    slug = _slug(kind, model, threat)
    numbers = list(range(1, len(runs) + 1))
    xs, ticks = [float(i) for i in numbers], run_ticks(len(runs))
    trend = {name: (xs, ys) for name, ys in _trend_series(kind, runs).items()}
    single = _single_run_chart(kind, runs[0], slug) if len(runs) == 1 else None
    charts = [single] if single else [
        overlay_chart(trend, x_label="run (oldest to newest)", y_label="accuracy", x_ticks=ticks,
                      title=f"{'Certified' if kind == 'certify' else 'Clean and robust'} accuracy over runs",
                      element_id=f"trend-{slug}")]
    classes = [per_class_robust(r.result) for r in runs]
    names = list(dict.fromkeys(name for row in classes for name in row))
    if kind == "evaluate" and names and len(runs) > 1:
        per_class = {f"class {n}": (xs, [row.get(n, math.nan) for row in classes]) for n in names}
        charts.append(overlay_chart(per_class, x_label="run (oldest to newest)", y_label="robust accuracy",
                                    x_ticks=ticks, title="Per-class robust accuracy over runs",
                                    element_id=f"per-class-{slug}"))
    headline = "certified / smoothed" if kind == "certify" else "robust"
    rows = []
    for number, run in zip(numbers, runs, strict=True):
        value = (run.metrics.get("smoothed_accuracy") if kind == "certify" else run.metrics.get("robust_accuracy"))
        gate = f'<span class="{escape(run.gate)}">{escape(run.gate)}</span>' if run.gate else ""
        link = (f'<a class="run-link" href="{escape(links[run.run_id])}">report</a>' if run.run_id in links
                else '<span class="no-report">no report</span>')
        rows.append(f'<tr data-run="{escape(run.run_id)}"><td class="num">{number}</td>'
                    f"<td><code>{escape(run.run_id)}</code></td><td>{escape(run.created_at)}</td>"
                    f"<td><code>{escape((run.git_commit or '')[:10])}</code></td>"
                    f"<td><code>{escape(run.model_fingerprint or '')}</code></td>"
                    f"<td>{escape(run.data or '')}</td><td class=\"num\">{_pct(run.metrics.get('clean_accuracy'))}</td>"
                    f'<td class="num">{_pct(value)}</td><td>{gate}</td><td>{link}</td></tr>')
    head = ("<tr><th>#</th><th>run</th><th>time</th><th>commit</th><th>model fingerprint</th><th>data</th>"
            f"<th>clean</th><th>{headline}</th><th>gate</th><th>report</th></tr>")
    return (f'<section class="model" id="{slug}"><h2>{escape(model)} <small>{escape(kind)}, '
            f"{escape(threat)}, {len(runs)} run{'s' if len(runs) != 1 else ''}</small></h2>"
            f'<div class="charts">{"".join(charts)}</div>'
            f'<table class="runs">{head}{"".join(rows)}</table></section>')


def render_dashboard(runs: Sequence[RunRecord], *, links: dict[str, str] | None = None,
                     overlay: tuple[RunRecord, RunRecord] | None = None, source: str = "") -> str:
    """The dashboard page for `runs` (oldest first); `links` maps run ids to report hrefs."""
    links = links or {}
    groups = _groups(runs)
    pair = overlay or _overlay_pair(runs)
    if pair:
        curves = {f"{r.model} {r.run_id}": _curve(r) for r in pair}
        compare = overlay_chart(curves, title=f"Accuracy against eps: two runs at {pair[1].threat}", x_label="eps",
                                y_label="robust accuracy", element_id="eps-overlay", dashed=[True, False])
    else:
        compare = ('<p class="no-data">No two evaluations with an accuracy-vs-eps curve under the same threat '
                   "model: each model's own curve is in its section below.</p>")
    nav = "".join(f'<a href="#{_slug(*key)}">{escape(key[1])} ({escape(key[0])}, {escape(key[2])})</a>'
                  for key, _ in groups)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = "".join(_section(key, group, links) for key, group in groups) or "<p>No runs recorded yet.</p>"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>bastion: run history</title><style>{_CSS}</style></head><body>"
            f"<header><h1>Robustness history</h1><p class=\"sub\">{len(runs)} runs from <code>{escape(source)}</code>, "
            f"generated {stamp}</p><nav>{nav}</nav></header>"
            f'<section id="compare"><h2>Accuracy against eps</h2>{compare}</section>{body}</body></html>')


def _copy_reports(runs: Sequence[RunRecord], out: Path) -> dict[str, str]:
    links = {}
    for run in runs:
        if not run.report_path or not Path(run.report_path).is_file():
            continue
        source = Path(run.report_path)
        target = out / "reports" / run.run_id / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        links[run.run_id] = f"reports/{quote(run.run_id)}/{quote(source.name)}"
    return links


def build_site(store: RunStore, out: str | Path, *, compare: tuple[str, str] | None = None) -> Path:
    """Write the dashboard of `store` to `out`/index.html, with each run's report copied under `out`/reports."""
    site = Path(out)
    runs = store.runs()
    pair = (store.get(compare[0]), store.get(compare[1])) if compare else None
    if pair and pair[0].threat != pair[1].threat:
        raise InputError(f"--compare: {pair[0].run_id} is at {pair[0].threat}, {pair[1].run_id} at "
                         f"{pair[1].threat}: only curves of the same threat model are overlaid")
    links = _copy_reports(runs, site)
    return write_atomic(site / "index.html", render_dashboard(runs, links=links, overlay=pair,
                                                             source=str(store.path)))


def make_server(site: str | Path, *, port: int = 8000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for the site folder on `host`:`port` (port 0 picks a free one); call serve_forever()."""
    handler: Any = partial(_QuietHandler, directory=str(site))
    return ThreadingHTTPServer((host, port), handler)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        """Keep the terminal for the URL line."""
