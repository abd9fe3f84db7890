"""A command that ends cleanly: no process group and no helper thread left when the interpreter shuts down.

Under torchrun a rank that finished its work can still abort at exit ("terminate called without an
active exception", SIGABRT) when what holds gloo's work objects or a helper thread is torn down by
the interpreter's own finalization (pytorch #179291, #190489); torchrun then reports the job as
failed. The CLI dispatcher runs every command inside `clean_exit`, so that this teardown happens,
on success and on error, while the interpreter is whole (`atexit` would run too late for it).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm as std_tqdm
from tqdm._monitor import TMonitor
from tqdm.auto import tqdm as auto_tqdm

from bastion.distributed import teardown

__all__ = ["clean_exit", "stop_helper_threads"]


def stop_helper_threads() -> None:
    """Stop the helper threads a command may have started, so that none is alive at interpreter shutdown.

    bastion itself starts no thread in its commands; tqdm starts a monitor (a daemon thread) with
    its first bar in a terminal: it is stopped and joined here. The output streams are flushed.
    """
    for cls in {std_tqdm, auto_tqdm}:
        monitor = getattr(cls, "monitor", None)
        if monitor is not None:
            monitor.exit()
            cls.monitor = None
    # A tqdm subclass (a library's own bar) keeps its monitor on itself: stop every one still running.
    for thread in threading.enumerate():
        if isinstance(thread, TMonitor):
            thread.exit()
            if getattr(thread.tqdm_cls, "monitor", None) is thread:
                thread.tqdm_cls.monitor = None
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


@contextmanager
def clean_exit() -> Iterator[None]:
    """Around a whole command (the CLI dispatcher): the process group and helper threads are gone when it ends.

    Whatever the command did, on success (after a final barrier) or error (without one): a process
    group still joined is left (`bastion.distributed.teardown`), tqdm's monitor thread is stopped and
    the output streams are flushed, so that the process exits with the command's code.
    """
    finished = False
    try:
        yield
        finished = True
    finally:
        teardown(finished=finished)
        stop_helper_threads()
