"""The rows of an unfinished certification, saved group by group so that `--resume` loses nothing.

Each process appends the rows of every group it finishes to its own file,
`certify.partial.<rank>.jsonl` in the output folder, as one JSON line per row after a header line
naming the run (settings, model and data fingerprints). A run killed at any moment (even by
SIGKILL, mid-line) leaves whole groups and at most one torn line, which is ignored: a group counts
as done only when all its rows are there. A point's certificate depends only on the seed, its
index and the settings (and its group, which the chunking fixes), so a resumed run, with any number
of processes, writes the same rows as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bastion.errors import InputError

__all__ = ["PartialRows"]

_PATTERN = "certify.partial.*.jsonl"


class PartialRows:
    """Saved rows of an interrupted certification in `out`, for the run named by `identity`.

    Args:
        out: The output folder.
        rank: This process's rank (its own file).
        identity: What makes two runs the same run (settings, model and data fingerprints).
    """

    def __init__(self, out: Path, rank: int, identity: dict[str, Any]) -> None:
        self.out, self.rank, self.identity = out, rank, identity
        self.path = out / f"certify.partial.{rank}.jsonl"

    def files(self) -> list[Path]:
        """Every process's partial file in `out`."""
        return sorted(self.out.glob(_PATTERN))

    def load(self) -> dict[int, dict[str, Any]]:
        """The rows saved by earlier processes of this run, by index.

        Raises:
            InputError: If a partial file belongs to a run with other settings (naming the first change).
        """
        rows: dict[int, dict[str, Any]] = {}
        for path in self.files():
            lines = path.read_text(encoding="utf-8").splitlines()
            header = _parse(lines[0]) if lines else None
            if header is None:
                continue
            if header != self.identity:
                raise InputError(f"--resume: {path} belongs to another run ({_difference(header, self.identity)}); "
                                 "--overwrite starts over")
            for line in lines[1:]:
                row = _parse(line)
                if row is not None and isinstance(row.get("index"), int):
                    rows[row["index"]] = row
        return rows

    def start(self, keep: Iterable[dict[str, Any]]) -> None:
        """Begin this process's file afresh: the header, then the rows it keeps from earlier processes."""
        lines = [json.dumps(self.identity, sort_keys=True)] + [json.dumps(r) for r in keep]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add the rows of a finished group, flushed to disk before the next group starts."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in rows))
            handle.flush()
            os.fsync(handle.fileno())

    def clear(self) -> None:
        """Remove every partial file (the run's outputs are written)."""
        for path in self.files():
            path.unlink(missing_ok=True)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None  # a line torn by a kill mid-write
    return value if isinstance(value, dict) else None


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first setting that differs, as 'key old -> new'."""
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key} {old.get(key)!r} -> {new.get(key)!r}"
    return "same settings"
