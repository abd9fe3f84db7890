"""The request log: one SQLite row per sampled input (hash, scores, decision, latency).

Same conventions as the run history (`bastion.history.store`): WAL journal mode (readers such as
`bastion requests` never block the server), a busy timeout, one `BEGIN IMMEDIATE` transaction per
write, and the schema version in `PRAGMA user_version`. Inputs are logged by hash, never by
content. A seeded sampler keeps a share `sample` of the inputs.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bastion.errors import InputError

__all__ = ["LogRow", "RequestLog"]

SCHEMA_VERSION = 1
_SCHEMA = """CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    model TEXT NOT NULL,
    route TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    outcome TEXT NOT NULL,
    label INTEGER,
    model_label INTEGER NOT NULL,
    reason TEXT NOT NULL,
    confidence REAL NOT NULL,
    margin REAL NOT NULL,
    p_values TEXT NOT NULL,
    scores TEXT NOT NULL,
    latency_ms REAL NOT NULL
)"""
_COLUMNS = ("created_at", "model", "route", "input_hash", "outcome", "label", "model_label", "reason", "confidence",
            "margin", "p_values", "scores", "latency_ms")


@dataclass(frozen=True)
class LogRow:
    """One logged input."""

    model: str
    route: str
    input_hash: str
    outcome: str
    label: int | None
    model_label: int
    reason: str
    confidence: float
    margin: float
    p_values: dict[str, float]
    scores: dict[str, float]
    latency_ms: float


class RequestLog:
    """The SQLite request log at `path`.

    Args:
        path: The database file (created with its folder on first use).
        sample: Share of inputs logged, in [0, 1].
        seed: Seed of the sampler.
        timeout: Seconds to wait for another writer's lock.
    """

    def __init__(self, path: str | Path, *, sample: float = 1.0, seed: int = 0, timeout: float = 30.0) -> None:
        if not 0.0 <= sample <= 1.0:
            raise InputError(f"the log sample rate must lie in [0, 1], got {sample}")
        self.path, self.sample, self.timeout = Path(path), sample, timeout
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        if not create and not self.path.is_file():
            raise InputError(f"no request log at {self.path} (bastion serve --request-log writes one)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as error:
            raise InputError(f"cannot open the request log {self.path}: {error}") from None
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if create:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute(_SCHEMA)
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise InputError(f"{self.path} was written by a newer bastion (schema {version})")
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            yield connection
        except sqlite3.DatabaseError as error:
            raise InputError(f"{self.path} is not a usable request log: {error}") from None
        finally:
            connection.close()

    def create(self) -> None:
        """Create the file and its table (so readers find it before the first request)."""
        with self._lock, self._connect(create=True):
            pass

    def keep(self) -> bool:
        """Whether the next input is sampled."""
        with self._lock:
            return self.sample >= 1.0 or self._random.random() < self.sample

    def write(self, rows: Sequence[LogRow]) -> int:
        """Append rows in one transaction; returns how many."""
        if not rows:
            return 0
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        values = [(now, r.model, r.route, r.input_hash, r.outcome, r.label, r.model_label, r.reason, r.confidence,
                   r.margin, json.dumps(r.p_values), json.dumps(r.scores), r.latency_ms) for r in rows]
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._lock, self._connect(create=True) as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES ({marks})", values)
            connection.execute("COMMIT")
        return len(values)

    def rows(self, *, last: int = 50, outcome: str | None = None) -> list[dict[str, Any]]:
        """The last `last` rows (oldest first), optionally of one outcome; JSON columns decoded."""
        query = "SELECT seq, " + ", ".join(_COLUMNS) + " FROM requests"
        args: list[Any] = []
        if outcome:
            query += " WHERE outcome = ?"
            args.append(outcome)
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(int(last))
        with self._connect(create=False) as connection:
            connection.row_factory = sqlite3.Row
            found = [dict(row) for row in connection.execute(query, args)]
        for row in found:
            row["p_values"], row["scores"] = json.loads(row["p_values"]), json.loads(row["scores"])
        return found[::-1]

    def counts(self) -> dict[str, int]:
        """Rows per outcome."""
        with self._connect(create=False) as connection:
            return {o: int(n) for o, n in connection.execute("SELECT outcome, COUNT(*) FROM requests GROUP BY outcome")}
