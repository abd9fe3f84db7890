"""`bastion history`, `bastion compare` and `bastion dashboard`: read the run history."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from bastion.cli.common import check_out_dir
from bastion.errors import InputError

__all__ = ["default_db", "register"]


def default_db() -> str:
    """./bastion.db, else runs/bastion.db when only that exists (the default of runs written to runs/NAME)."""
    here, runs = Path("bastion.db"), Path("runs") / "bastion.db"
    return str(runs if not here.exists() and runs.exists() else here)


def _db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="SQLite run history (default: bastion.db here, else runs/bastion.db)")


def register(commands: Any) -> None:
    """Add the `history`, `compare` and `dashboard` subcommands."""
    history = commands.add_parser("history", help="list recorded runs as a table",
                                  description="The run history as a terminal table, oldest first.")
    _db_option(history)
    history.add_argument("--model", help="only runs of this model name")
    history.add_argument("--kind", choices=["evaluate", "certify", "train"], help="only runs of this kind")
    history.add_argument("--limit", type=int, default=30, help="the last N runs (default 30)")
    history.set_defaults(handler=run_history)

    compare = commands.add_parser("compare", help="compare two recorded runs (exit 1 if B regressed)",
                                  description="The regression gate's table for RUN_B against RUN_A as baseline: "
                                  "exit 0 when nothing dropped by more than allowed, 1 when something did.")
    compare.add_argument("run_a", metavar="RUN_A", help="baseline run id (or a unique prefix)")
    compare.add_argument("run_b", metavar="RUN_B", help="current run id (or a unique prefix)")
    _db_option(compare)
    compare.add_argument("--max-drop", type=float, help="largest allowed drop of each metric (default 0.02)")
    compare.add_argument("--config", help="TOML file whose [gate] table sets per-metric thresholds")
    compare.set_defaults(handler=run_compare)

    dashboard = commands.add_parser("dashboard", help="write (and serve) a static HTML dashboard of the history",
                                    description="A self-contained site: accuracy over runs per model, per-class "
                                    "robust accuracy over runs, two runs' accuracy-vs-eps curves overlaid, and links "
                                    "to each run's report (copied into the site).")
    _db_option(dashboard)
    dashboard.add_argument("--out", default="site", help="output folder (default site/)")
    dashboard.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                           help="the two runs whose curves are overlaid (default: the two latest with a curve)")
    dashboard.add_argument("--serve", action="store_true", help="then serve the site on localhost")
    dashboard.add_argument("--port", type=int, default=8000, help="port of --serve (default 8000)")
    dashboard.set_defaults(handler=run_dashboard)


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2%}"


def format_history(runs: list[Any]) -> str:
    """One line per run: id, time, kind, model, threat model, clean and headline accuracy, gate, commit."""
    header = ("run", "time", "kind", "model", "threat", "clean", "robust", "gate", "commit")
    rows = []
    for run in runs:
        clean, robust = _pct(run.metrics.get("clean_accuracy")), _pct(run.metrics.get("robust_accuracy"))
        if run.kind == "certify":  # the smoothed classifier's accuracy, and certified accuracy at the first radius > 0
            clean = _pct(run.metrics.get("smoothed_accuracy"))
            radii = sorted((float(k.partition("@")[2]), v) for k, v in run.metrics.items()
                           if k.startswith("certified_accuracy@") and float(k.partition("@")[2]) > 0)
            robust = f"{_pct(radii[0][1])} cert. r={radii[0][0]:g}" if radii else "-"
        rows.append((run.run_id, run.created_at.replace("+00:00", "Z"), run.kind, run.model, run.threat, clean,
                     robust, run.gate or "", (run.git_commit or "")[:10]))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in [header, tuple("-" * w for w in widths), *rows])


def run_history(args: argparse.Namespace) -> int:
    """Print the history table."""
    from bastion.history import RunStore

    if args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    runs = RunStore(args.db or default_db()).runs(model=args.model, kind=args.kind, limit=args.limit)
    print(format_history(runs) if runs else "no runs recorded")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Print the gate table of RUN_B against RUN_A; exit 1 on a regression."""
    from bastion.history import RunStore, Thresholds, compare_runs, read_gate_table

    thresholds = Thresholds.from_table(read_gate_table(args.config), max_drop=args.max_drop)
    store = RunStore(args.db or default_db())
    baseline, current = store.get(args.run_a), store.get(args.run_b)
    if (baseline.kind, baseline.threat) != (current.kind, current.threat):
        raise InputError(f"{baseline.run_id} is a {baseline.kind} run at {baseline.threat}, {current.run_id} a "
                         f"{current.kind} run at {current.threat}: they cannot be compared")
    report = compare_runs(baseline, current, thresholds)
    print(report.format())
    return 0 if report.passed else 1


def run_dashboard(args: argparse.Namespace) -> int:
    """Write the site; with --serve, serve it until interrupted."""
    from bastion.history import RunStore
    from bastion.history.dashboard import build_site, make_server

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must lie in [0, 65535], got {args.port}")
    pair = (args.compare[0], args.compare[1]) if args.compare else None
    store = RunStore(args.db or default_db())
    store.runs(limit=1)  # a missing or foreign history fails before anything is written
    check_out_dir(args.out)
    page = build_site(store, args.out, compare=pair)
    print(f"dashboard: {page}")
    if args.serve:
        try:
            server = make_server(args.out, port=args.port)
        except OSError as error:
            raise InputError(f"cannot serve on port {args.port}: {error.strerror or error}") from None
        port = server.server_address[1]
        print(f"serving http://127.0.0.1:{port}/ (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped")
        finally:
            server.server_close()
    return 0
