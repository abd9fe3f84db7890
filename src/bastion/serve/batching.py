"""Micro-batching: concurrent requests are gathered into one forward pass and answered one by one.

Dispatch at once when the model is idle, gather only while it is busy (the rule of continuous
batching in Orca, Yu et al., OSDI 2022, applied to whole requests; Clipper's and Triton's dynamic
batching instead hold the first input for up to a delay, which a lone client pays on every
request). An input that finds the model idle runs alone, with no added latency; inputs that arrive
while a batch runs queue up and go together, up to `max_batch`, as soon as it ends. Under load the
batches grow by themselves. Batches run on one worker thread (the model's device is used by one
batch at a time), so the event loop keeps accepting requests while the model works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import torch
from torch import Tensor

__all__ = ["MicroBatcher", "take_batch"]

R = TypeVar("R")
T = TypeVar("T")
Q = TypeVar("Q")
_log = logging.getLogger(__name__)


def take_batch(queue: asyncio.Queue[Q | None], first: Q, max_batch: int) -> tuple[list[Q], bool]:
    """The batch to dispatch now: `first` and what is already queued, up to `max_batch`; never waits.

    Returns:
        The batch, and True when the stop signal (None) was met in the queue.
    """
    batch = [first]
    while len(batch) < max_batch and not queue.empty():
        item = queue.get_nowait()
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


class MicroBatcher(Generic[R]):
    """Gather single inputs (C, H, W) into batches for `run`, which returns one result per input.

    Args:
        run: Function of a batch (B, C, H, W) returning B results; runs on a worker thread.
        max_batch: Largest batch, >= 1 (1 turns batching off).
        max_wait: Kept for compatibility and ignored: no input ever waits for others while the model is idle.

    Example:
        >>> batcher = MicroBatcher(guard_fn, max_batch=32)
        >>> await batcher.start(); result = await batcher.submit(x); await batcher.stop()
    """

    def __init__(self, run: Callable[[Tensor], Sequence[R]], max_batch: int = 32, max_wait: float = 0.01) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait >= 0, got {max_batch} and {max_wait}")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self._queue: asyncio.Queue[tuple[Tensor, asyncio.Future[R]] | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-batch")
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Answer every input already submitted, then stop the loop and its thread."""
        if self._queue is None or self._task is None:
            return
        await self._queue.put(None)
        await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._queue = self._task = self._executor = None

    async def submit(self, x: Tensor) -> R:
        """Queue one input (C, H, W) and wait for its result."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((x, future))
        return await future

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the worker thread, between batches (e.g. a recalibration that must not race one)."""
        if self._executor is None:
            raise RuntimeError("the batcher is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _loop(self) -> None:
        queue, loop = self._queue, asyncio.get_running_loop()
        if queue is None:
            raise RuntimeError("the batcher is not running")
        running: asyncio.Task[None] | None = None
        stopping = False
        while not stopping:
            first = await queue.get()
            if first is None:
                break
            if running is not None:  # the model is busy: what arrives until it is done joins this batch
                await running
            batch, stopping = take_batch(queue, first, self.max_batch)
            running = loop.create_task(self._run(batch, loop))  # the model is idle: dispatch at once
        if running is not None:
            await running
        # Inputs queued after the stop signal still get their answers.
        rest = []
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                rest.append(item)
        for start in range(0, len(rest), self.max_batch):
            await self._run(rest[start:start + self.max_batch], loop)

    async def _run(self, batch: list[tuple[Tensor, asyncio.Future[R]]], loop: asyncio.AbstractEventLoop) -> None:
        inputs = torch.stack([x for x, _ in batch])
        try:
            results = await loop.run_in_executor(self._executor, self.run, inputs)
            if len(results) != len(batch):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(batch)} inputs")
        except Exception as error:  # every waiting request must hear about it, and the loop must go on
            _log.exception("a batch of %d inputs failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
