"""Micro-batching gathers concurrent inputs, answers each caller its own result, survives errors, drains on stop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from bastion.serve import MicroBatcher
from bastion.serve.batching import take_batch


def run(coro):
    return asyncio.run(coro)


def test_concurrent_inputs_share_batches_and_get_their_own_answers() -> None:
    sizes: list[int] = []

    def model(x: torch.Tensor) -> list[float]:
        sizes.append(len(x))
        time.sleep(0.01)
        return [float(v) for v in x.flatten(1).sum(1)]

    async def main() -> list[float]:
        batcher = MicroBatcher(model, max_batch=8, max_wait=0.05)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(torch.full((1, 2, 2), float(i))) for i in range(20)))
        await batcher.stop()
        return results

    results = run(main())
    assert results == [4.0 * i for i in range(20)]
    assert max(sizes) == 8 and sum(sizes) == 20 and len(sizes) <= 4


def test_batching_off_runs_one_at_a_time_and_wait_is_bounded() -> None:
    sizes: list[int] = []

    async def main() -> float:
        batcher = MicroBatcher(lambda x: sizes.append(len(x)) or [0] * len(x), max_batch=1, max_wait=1.0)
        await batcher.start()
        await asyncio.gather(*(batcher.submit(torch.zeros(1)) for _ in range(5)))
        lone = MicroBatcher(lambda x: [0] * len(x), max_batch=32, max_wait=0.02)
        await lone.start()
        start = time.perf_counter()
        await lone.submit(torch.zeros(1))  # alone: waits max_wait, not forever
        took = time.perf_counter() - start
        await lone.stop()
        await batcher.stop()
        return took

    took = run(main())
    assert sizes == [1] * 5 and took < 0.5


def test_a_failing_batch_fails_its_callers_only_and_stop_drains_the_queue() -> None:
    calls = {"n": 0}
    thread_names: set[str] = set()

    def model(x: torch.Tensor) -> list[int]:
        calls["n"] += 1
        thread_names.add(threading.current_thread().name)
        if bool((x < 0).any()):
            raise RuntimeError("bad batch")
        return [1] * len(x)

    async def main() -> tuple[object, list[int]]:
        batcher = MicroBatcher(model, max_batch=4, max_wait=0.0)
        await batcher.start()
        bad = await asyncio.gather(batcher.submit(-torch.ones(1)), return_exceptions=True)
        pending = [asyncio.ensure_future(batcher.submit(torch.ones(1))) for _ in range(10)]
        await asyncio.sleep(0)
        await batcher.stop()
        return bad[0], [await p for p in pending]

    error, answers = run(main())
    assert isinstance(error, RuntimeError) and answers == [1] * 10
    assert all(name.startswith("bastion-batch") for name in thread_names)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda x: [], max_batch=0)


def test_an_input_that_finds_the_model_idle_is_dispatched_at_once() -> None:
    """No gathering delay for a lone client: even with max_wait at 1,000 s the answer comes without waiting."""
    sizes: list[int] = []

    async def main() -> None:
        batcher = MicroBatcher(lambda x: sizes.append(len(x)) or [0] * len(x), max_batch=32, max_wait=1000.0)
        await batcher.start()
        for _ in range(3):
            await asyncio.wait_for(batcher.submit(torch.zeros(1)), timeout=30)
        await batcher.stop()

    run(main())
    assert sizes == [1, 1, 1]


def test_inputs_are_gathered_only_while_the_model_is_busy() -> None:
    sizes: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def model(x: torch.Tensor) -> list[float]:
        sizes.append(len(x))
        entered.set()
        release.wait(timeout=30)
        return [float(v) for v in x.flatten()]

    async def main() -> list[float]:
        batcher = MicroBatcher(model, max_batch=4, max_wait=0.0)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(torch.zeros(1)))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 30)  # the model is now busy
        rest = [asyncio.ensure_future(batcher.submit(torch.full((1,), float(i)))) for i in range(1, 7)]
        for _ in range(5):
            await asyncio.sleep(0)  # every submit has queued its input
        release.set()
        results = [await first] + [await r for r in rest]
        await batcher.stop()
        return results

    results = run(main())
    # The first input ran alone at once; the six that came while it ran went as soon as it ended, in
    # batches of at most max_batch, each caller getting its own answer.
    assert sizes == [1, 4, 2] and results == [float(i) for i in range(7)]


def test_take_batch_takes_what_is_queued_and_never_waits() -> None:
    async def main() -> tuple[list[int], bool, int, list[int], bool]:
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        for item in (1, 2, 3):
            queue.put_nowait(item)
        batch, stop = take_batch(queue, 0, 3)
        left = queue.qsize()
        queue.put_nowait(None)
        tail, stopped = take_batch(queue, 9, 8)
        return batch, stop, left, tail, stopped

    batch, stop, left, tail, stopped = run(main())
    assert (batch, stop, left) == ([0, 1, 2], False, 1) and (tail, stopped) == ([9, 3], True)
