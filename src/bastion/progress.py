"""Progress on stderr that a user sees coming: a tqdm bar in a terminal, a log line every ~30 s elsewhere.

With stderr a terminal a bar redraws in place. Without one (CI, `make demo | tee log`) a bar would
print nothing useful until the end, so `progress_bar` returns `Lines` instead: the same calls
(`update`, `set_postfix`, `close`, a context manager), written as a line on the `bastion.progress`
logger at most every `interval()` seconds (`BASTION_PROGRESS_SECONDS`, default 30), with the
points done and an estimate of the time left. The clock is shared by all bars, so a stage made of
many short loops still gets a line every interval. `stage_started` and `stage_finished` write one
line each around a stage, in a terminal too (the bars vanish when done; these lines stay).

A command that shows no progress (--quiet, ranks other than 0 under torchrun) passes
`enabled=False`: nothing is written.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Lines", "interval", "progress_bar", "stage_finished", "stage_restored", "stage_started"]

logger = logging.getLogger("bastion.progress")

_DEFAULT_SECONDS = 30.0
_LAST = [time.monotonic()]  # when any bar last wrote a line: one clock for all of them


def interval() -> float:
    """Seconds between progress lines: `BASTION_PROGRESS_SECONDS` (a number > 0), else 30."""
    try:
        seconds = float(os.environ.get("BASTION_PROGRESS_SECONDS", _DEFAULT_SECONDS))
    except ValueError:
        return _DEFAULT_SECONDS
    return seconds if seconds > 0 else _DEFAULT_SECONDS


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Lines:
    """A progress bar as log lines: `update` writes one when `interval()` seconds passed since the last line.

    Args:
        total: Units to do (points, images).
        desc: What is being done, e.g. the stage's name.
        unit: The unit's name in the line ("pt", "img").
        initial: Units already done (a resumed run): they count for the share, not for the rate.
        enabled: Write nothing when False.
    """

    def __init__(self, total: int, desc: str = "", unit: str = "pt", initial: int = 0, enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.enabled = int(total), desc, unit, enabled
        self.n = self.start_n = int(initial)
        self.start = time.monotonic()
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        """Count `n` more units done; write a line when the interval has passed."""
        self.n += int(n)
        if self.enabled and time.monotonic() - _LAST[0] >= interval():
            self.write()

    def set_postfix(self, **values: Any) -> None:
        """Numbers shown at the end of the next line (a loss, an accuracy)."""
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def write(self) -> None:
        """Write the line now: done / total, share, time spent and the estimated time left."""
        now = time.monotonic()
        _LAST[0] = now
        spent, done = now - self.start, self.n - self.start_n
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        left = ""
        if done > 0 and self.total:
            left = f", about {_duration(spent * max(0, self.total - self.n) / done)} left"
        tail = f"; {self.postfix}" if self.postfix else ""
        logger.info("%s: %d/%d %s%s, %s%s%s", self.desc or "progress", self.n, self.total, self.unit, share,
                    _duration(spent), left, tail)

    def close(self) -> None:
        """Nothing to clear: the lines stay."""

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def progress_bar(total: int, *, desc: str = "", unit: str = "pt", enabled: bool = True, initial: int = 0) -> Any:
    """A tqdm bar (cleared when done) when stderr is a terminal, else `Lines`; silent when not `enabled`."""
    if enabled and sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False)
    return Lines(total, desc, unit, initial, enabled)


def stage_started(name: str, enabled: bool = True) -> float:
    """Write that stage `name` starts; returns the clock to give `stage_finished`."""
    if enabled:
        logger.info("stage %s: started", name)
        _LAST[0] = time.monotonic()
    return time.monotonic()


def stage_finished(name: str, started: float, enabled: bool = True, found: str = "") -> None:
    """Write that stage `name` ended, its seconds and (in short) what it found."""
    if enabled:
        logger.info("stage %s: done in %.1f s%s", name, time.monotonic() - started, f" ({found})" if found else "")
        _LAST[0] = time.monotonic()


def stage_restored(name: str, seconds: float, enabled: bool = True) -> None:
    """Write that stage `name` was restored from a saved run (resumed), not run again."""
    if enabled:
        logger.info("stage %s: restored from the saved run (it took %.1f s then)", name, seconds)
