"""`bastion requests`: read the request log that `bastion serve --request-log` writes."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    """Add the `requests` subcommand."""
    p = commands.add_parser("requests", help="list the guarded server's logged requests",
                            description="The last rows of a bastion serve request log (SQLite), oldest first, "
                            "with a count per outcome.")
    p.add_argument("db", metavar="DB", help="the request log (bastion serve --request-log DB)")
    p.add_argument("--outcome", choices=["accept", "flag", "fallback", "reject"], help="only this outcome")
    p.add_argument("--limit", type=int, default=30, help="the last N rows (default 30)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the counts and the rows."""
    from bastion.serve.requestlog import RequestLog

    log = RequestLog(args.db)
    rows = log.rows(last=args.limit, outcome=args.outcome)
    if args.json:
        print("\n".join(json.dumps(row) for row in rows))
        return 0
    counts = log.counts()
    print("requests logged: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    for row in rows:
        p_min = min(row["p_values"].values()) if row["p_values"] else float("nan")
        print(f"{row['seq']:>6}  {row['created_at']}  {row['route']:<7}  {row['input_hash']}  {row['outcome']:<8}  "
              f"label {row['label'] if row['label'] is not None else '-':>2}  min p {p_min:.4f}  "
              f"{row['latency_ms']:.1f} ms  {row['reason']}")
    return 0
