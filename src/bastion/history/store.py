"""The run history: one SQLite file, one row per run, safe when several CI jobs write at once.

Concurrency: the database runs in WAL journal mode (readers never block the writer), every
connection waits on a busy lock (`timeout`), every write is one `BEGIN IMMEDIATE` transaction (the
write lock is taken up front, so two writers never deadlock upgrading read locks), and a write that
still meets "database is locked" is retried with jittered exponential backoff. The schema version
is SQLite's `PRAGMA user_version`; `MIGRATIONS[i]` brings a database from version i to i + 1, and
a database written by a newer bastion is refused rather than misread.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from bastion.errors import InputError
from bastion.history.record import RunRecord

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "RunStore"]

T = TypeVar("T")

MIGRATIONS: list[tuple[str, ...]] = [
    (  # 0 -> 1: the runs table
        """CREATE TABLE runs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            threat TEXT NOT NULL,
            model_spec TEXT,
            model_fingerprint TEXT,
            data TEXT,
            data_fingerprint TEXT,
            norm TEXT,
            eps REAL,
            metrics TEXT NOT NULL,
            result TEXT NOT NULL,
            out_dir TEXT,
            report_path TEXT,
            git_commit TEXT,
            command TEXT
        )""",
    ),
    (  # 1 -> 2: the gate's outcome, and an index for the baseline look-up
        "ALTER TABLE runs ADD COLUMN gate TEXT",
        "CREATE INDEX runs_by_model ON runs (model, kind, threat, seq)",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = ("run_id", "created_at", "kind", "model", "threat", "model_spec", "model_fingerprint", "data",
            "data_fingerprint", "norm", "eps", "metrics", "result", "out_dir", "report_path", "git_commit",
            "command", "gate")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


class RunStore:
    """The history database at `path`.

    Args:
        path: The SQLite file; created (with its folder) on the first write.
        timeout: Seconds a statement waits for another writer's lock, and the budget of the retries.

    Example:
        >>> store = RunStore("runs/bastion.db")
        >>> run_id = store.record(from_result("evaluate", report))
        >>> store.baseline("last", model="zoo:mnist-cnn", kind="evaluate", threat="linf eps=0.3")
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    # -- connections -------------------------------------------------------------------------
    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        """A connection; with `create=False` read-only (a reading command never writes, nor migrates)."""
        if not create and not self.path.is_file():
            raise InputError(f"no run history at {self.path} (bastion evaluate, certify and train write one)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if create:
                connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            else:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                connection = sqlite3.connect(uri, timeout=self.timeout, isolation_level=None, uri=True)
        except sqlite3.Error as error:
            raise InputError(f"cannot open the run history {self.path}: {error}") from None
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._check_ours(connection)
            if create:
                self._retry(lambda: connection.execute("PRAGMA journal_mode = WAL"))
                self._retry(lambda: self._migrate(connection))
            yield connection
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and _is_busy(error):
                raise
            raise InputError(f"{self.path} is not a usable bastion history: {error}") from None
        finally:
            connection.close()

    def _check_ours(self, connection: sqlite3.Connection) -> None:
        """Refuse another program's SQLite file (tables but no bastion schema), and a newer bastion's."""
        row = connection.execute(  # one statement, so one snapshot: never a migration half seen
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT group_concat(name, char(10)) FROM "
            "sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%')").fetchone()
        version, tables = int(row[0]), sorted((row[1] or "").split("\n")) if row[1] else []
        if version > SCHEMA_VERSION:
            raise InputError(f"run history schema version {version} is newer than this bastion's "
                             f"({SCHEMA_VERSION}): upgrade bastion")
        if (version == 0 and tables) or (version > 0 and "runs" not in tables):
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise InputError(f"{self.path} is not a bastion run history (it holds the tables {shown}): "
                             "give another --db")

    @staticmethod
    def _select(connection: sqlite3.Connection) -> str:
        """The SELECT list of a read: columns an older schema lacks read as NULL (reading never migrates)."""
        present = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
        if not present:
            raise InputError("no runs recorded yet (the history file is empty)")
        return ", ".join(["seq", *(c if c in present else f"NULL AS {c}" for c in _COLUMNS)])

    def _retry(self, action: Callable[[], T]) -> T:
        """Run `action`, retrying while the database is locked, for at most `timeout` seconds."""
        deadline, attempt = time.monotonic() + self.timeout, 0
        while True:
            try:
                return action()
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() > deadline:
                    raise
                time.sleep(min(0.02 * 2**attempt, 0.5) * (0.5 + random.random()))
                attempt += 1

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> None:
        """Bring the schema to `SCHEMA_VERSION` in one transaction (a no-op when it is there)."""
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise InputError(f"run history schema version {version} is newer than this bastion's "
                             f"({SCHEMA_VERSION}): upgrade bastion")
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = int(connection.execute("PRAGMA user_version").fetchone()[0])  # another writer may have won
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def check(self) -> None:
        """Refuse now, without writing, a file that is not a bastion history (a no-op when it does not exist yet)."""
        if self.path.exists():
            with self._connect(create=False):
                pass

    def schema_version(self) -> int:
        """The database's schema version (reading does not migrate: the next write does)."""
        with self._connect(create=False) as connection:
            return int(connection.execute("PRAGMA user_version").fetchone()[0])

    # -- writing -----------------------------------------------------------------------------
    def record(self, record: RunRecord) -> str:
        """Store `record` in one transaction; returns its run id, suffixed "-2", "-3"... if the id was taken."""
        values = _row_values(record)

        def insert(connection: sqlite3.Connection) -> str:
            connection.execute("BEGIN IMMEDIATE")
            try:
                run_id, suffix = record.run_id, 1
                while connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                    suffix += 1
                    run_id = f"{record.run_id}-{suffix}"
                values["run_id"] = run_id
                names = ", ".join(_COLUMNS)
                marks = ", ".join("?" for _ in _COLUMNS)
                connection.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", [values[c] for c in _COLUMNS])
                connection.execute("COMMIT")
                return run_id
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        with self._connect(create=True) as connection:
            return self._retry(lambda: insert(connection))

    # -- reading -----------------------------------------------------------------------------
    def runs(self, *, model: str | None = None, kind: str | None = None, threat: str | None = None,
             limit: int | None = None) -> list[RunRecord]:
        """Runs matching the filters, oldest first (the last `limit` of them when given)."""
        where, params = _where(model=model, kind=kind, threat=threat)
        with self._connect(create=False) as connection:
            query = f"SELECT {self._select(connection)} FROM runs{where} ORDER BY seq DESC"
            if limit is not None:
                query += f" LIMIT {int(limit)}"
            rows = self._retry(lambda: connection.execute(query, params).fetchall())
        return [_from_row(row) for row in reversed(rows)]

    def get(self, run_id: str) -> RunRecord:
        """The run with this id, or the only run whose id starts with it."""
        with self._connect(create=False) as connection:
            columns = self._select(connection)
            rows = self._retry(lambda: connection.execute(
                f"SELECT {columns} FROM runs WHERE run_id = ? OR run_id LIKE ? ESCAPE '\\' "
                "ORDER BY seq", (run_id, _like_prefix(run_id))).fetchall())
        exact = [row for row in rows if row[1] == run_id]
        if exact or len(rows) == 1:
            return _from_row((exact or rows)[0])
        if not rows:
            raise InputError(f"no run {run_id!r} in {self.path}")
        raise InputError(f"run id {run_id!r} is ambiguous in {self.path}: {', '.join(r[1] for r in rows[:5])}")

    def baseline(self, which: str, *, model: str, kind: str, threat: str, exclude: str | None = None,
                 key: Callable[[RunRecord], float] | None = None) -> RunRecord | None:
        """The run a new run of `model` under `threat` is compared with.

        Args:
            which: "last" (the most recent run that did not fail its own gate), "best" (the highest
                `key`, by default robust accuracy) or a run id (any model; the threat model must match).
            model: The model name.
            kind: The kind of run.
            threat: The threat model, e.g. "linf eps=0.3".
            exclude: A run id never chosen (the current run).
            key: The score "best" maximizes.

        Returns:
            The baseline, or None when no earlier run of this model and threat model exists.

        Raises:
            InputError: If a run id names no run, or a run under another threat model or kind.
        """
        if which not in ("last", "best"):
            run = self.get(which)
            if (run.kind, run.threat) != (kind, threat):
                raise InputError(f"baseline {run.run_id} is a {run.kind} run at {run.threat}, this is a {kind} "
                                 f"run at {threat}: they cannot be compared")
            return run
        candidates = [r for r in self.runs(model=model, kind=kind, threat=threat) if r.run_id != exclude]
        if which == "last":
            passed = [r for r in candidates if r.gate != "fail"]
            return passed[-1] if passed else None
        score = key or (lambda r: r.metrics.get("robust_accuracy", float("-inf")))
        return max(reversed(candidates), key=score, default=None)  # ties: the most recent


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(**filters: str | None) -> tuple[str, list[str]]:
    clauses = [(f"{name} = ?", value) for name, value in filters.items() if value is not None]
    if not clauses:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in clauses), [v for _, v in clauses if v is not None]


def _row_values(record: RunRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in _COLUMNS}
    values["metrics"] = json.dumps(record.metrics, allow_nan=False)
    values["result"] = json.dumps(record.result, allow_nan=True)
    return values


def _from_row(row: tuple[Any, ...]) -> RunRecord:
    values = dict(zip(("seq", *_COLUMNS), row, strict=True))
    values["metrics"] = json.loads(values["metrics"])
    values["result"] = json.loads(values["result"])
    return RunRecord(**values)
