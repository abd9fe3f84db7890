"""The status page: live counters, calibration summary, drift monitor and the benign-shift check.

One self-contained HTML page. The server renders the current values; a small script refreshes
them from `/status.json` every second, so an open page stays live. Every string from the server's
state is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["render_status_page"]

_OUTCOMES = ("accept", "flag", "fallback", "reject")

_STYLE = """body{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:collapse}
td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}
.counter{font-size:1.6em;font-weight:600}.alarm{color:#b00;font-weight:600}.ok{color:#070}
.banner{padding:.6em 1em;border-radius:6px;margin:1em 0}.banner.ok{background:#e8f5e9}
.banner.alarm{background:#fdecea}
.cards{display:flex;gap:2em}.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1.2em}"""

_SCRIPT = """async function refresh(){try{const r=await fetch('status.json',{cache:'no-store'});
const s=await r.json();let total=0;for(const o of ['accept','flag','fallback','reject']){
const v=Math.round((s.requests||{})[o]||0);total+=v;document.getElementById('count-'+o).textContent=v;}
document.getElementById('count-total').textContent=total;
const g=s.guarantee,b=document.getElementById('guarantee');b.className='banner '+(g.holds?'ok':'alarm');
document.getElementById('guarantee-state').textContent=g.holds?'The guarantee holds':'The guarantee no longer holds';
document.getElementById('guarantee-why').textContent=g.why;
const d=s.drift;document.getElementById('drift-windows').textContent=d.windows;
document.getElementById('drift-alarms').textContent=d.alarms;
const a=document.getElementById('drift-state');a.textContent=d.alarm?'ALARM':'no alarm';
a.className=d.alarm?'alarm':'ok';for(const k in d.statistics){const e=document.getElementById('drift-stat-'+k);
if(e)e.textContent=d.statistics[k].toFixed(4);}
document.body.dataset.refreshed=String(Number(document.body.dataset.refreshed||0)+1);}catch(e){
document.body.dataset.error=String(e);}}
refresh();setInterval(refresh,1000);"""


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1%}"


def _check_row(r: dict[str, Any]) -> str:
    detected = "" if "n_success" not in r else f"{_pct(r.get('detection_rate'))} of {int(r['n_success'])}"
    return (f"<tr><td>{escape(str(r['name']))}</td><td>{escape(str(r['kind']))}</td><td>{int(r['n'])}</td>"
            f"<td>{_pct(r['flag_rate'])} ± {_pct(2 * float(r.get('standard_error', 0.0)))}</td>"
            f"<td>{_pct(r.get('accuracy'))}</td><td>{detected}</td></tr>")


def _check_section(check: dict[str, Any] | None) -> str:
    if not check:
        return ("<p>No benign-shift check loaded. Run <code>bastion serve --check --check-out check.json</code> "
                "and start the server with <code>--check-report check.json</code>.</p>")
    rows = "".join(_check_row(r) for r in check.get("rows", []))
    return (f"<p>target FPR {_pct(check.get('fpr'))}; {escape(str(check.get('note', '')))}</p>"
            "<table id=\"check\"><tr><th>input</th><th>kind</th><th>n</th><th>flag rate ± 2 se</th>"
            f"<th>accuracy answered</th><th>attacks detected</th></tr>{rows}</table>")


def _banner(guarantee: dict[str, Any], details: dict[str, Any]) -> str:
    holds = bool(guarantee["holds"])
    bounds = ", ".join(f"{escape(k)} {v:.2%}" for k, v in details.get("flag_rate_bound", {}).items())
    return (f'<div id="guarantee" class="banner {"ok" if holds else "alarm"}"><strong id="guarantee-state">'
            f'{"The guarantee holds" if holds else "The guarantee no longer holds"}</strong>: '
            f'<span id="guarantee-why">{escape(str(guarantee["why"]))}</span><br><small>Tested on every input by a '
            f"conformal test martingale (false-alarm probability {details.get('false_alarm', 0):g} over any "
            f"horizon); with probability {1 - details.get('false_alarm', 0):g} over the draw of this calibration set, "
            f"each signal's clean p-values fall to the flag level at most this often: {bounds}.</small></div>")


def render_status_page(status: dict[str, Any]) -> str:
    """The page for a `GuardedServer.status()` dictionary."""
    requests, guard, drift = status["requests"], status["guard"], status["drift"]
    counters = "".join(f'<div class="card">{o}<br><span class="counter" id="count-{o}">'
                       f'{int(requests.get(o, 0))}</span></div>' for o in _OUTCOMES)
    total = sum(int(requests.get(o, 0)) for o in _OUTCOMES)
    detectors = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(d['settings'])}</td><td>{int(d['n'])}</td>"
        f"<td>{d['median']:.4g}</td><td>{d['q90']:.4g}</td><td>{d['q99']:.4g}</td></tr>"
        for name, d in guard["detectors"].items())
    stats = "".join(
        f"<tr><td>{escape(k)}</td><td id=\"drift-stat-{escape(k)}\">{drift['statistics'].get(k, 0.0):.4f}</td>"
        f"<td>{drift['thresholds'][k]:.4f}</td></tr>" for k in drift["thresholds"])
    state = '<span id="drift-state" class="alarm">ALARM</span>' if drift["alarm"] else \
        '<span id="drift-state" class="ok">no alarm</span>'
    reject = guard["reject_level"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bastion serve: {escape(status['model'])}</title>
<style>{_STYLE}</style></head>
<body data-refreshed="0">
<h1>bastion serve: <span id="model">{escape(status['model'])}</span></h1>
<p>weights sha256 <code>{escape(status['fingerprint'][:16])}</code>; ready: {str(status['ready']).lower()};
micro-batches of up to {int(status['batching']['max_batch'])} inputs, dispatched as soon as the model is idle</p>
{_banner(status['guarantee'], status.get('guarantee_details', {}))}
<section id="counters"><h2>Inputs answered (<span id="count-total">{total}</span>)</h2>
<div class="cards">{counters}</div></section>
<section id="calibration"><h2>Guard calibration</h2>
<p>Detector scores are turned into conformal p-values against <span id="n-calibration">
{int(next(iter(guard['detectors'].values()))['n'])}</span> clean images ({escape(str(guard['calibration']))});
an input is flagged when a p-value is at most {guard['flag_level']:.4g} (target false-positive rate
<span id="target-fpr">{guard['fpr']:g}</span> over {len(guard['detectors'])} detector(s)){'' if reject is None else
f', rejected at {reject:.4g}'}. Flagged inputs: {escape(guard['on_flag'])}
(fallback {escape(guard['fallback'])}).</p>
<table><tr><th>detector</th><th>settings</th><th>n</th><th>median score</th><th>90%</th><th>99%</th></tr>
{detectors}</table></section>
<section id="drift"><h2>Drift monitor (diagnostic)</h2>
<p>{state}: <span id="drift-windows">{drift['windows']}</span> windows of {drift['window']} requests,
<span id="drift-alarms">{drift['alarms']}</span> alarm(s); threshold set for no false alarm within
{drift['run_length']} clean requests on average.</p>
<table><tr><th>signal</th><th>statistic (weighted KS)</th><th>threshold</th></tr>{stats}</table></section>
<section id="benign-shifts"><h2>Flag rates on benign shifts and attacks</h2>{_check_section(status.get('check'))}
</section>
<script>{_SCRIPT}</script>
</body></html>
"""
