"""A stage's points in chunks, each chunk one batch with its own randomness, shared among torchrun's processes.

The chunks are runs of the global indices a stage asks for, in index order, as few as hold at most
`batch_size` points each and of equal size (within one point: 1,862 points at 256 make eight
chunks of 232 or 233, not seven of 256 and one of 70, so no process waits on another for a chunk's
worth of work): they depend on those indices and the batch size, never on the number of processes.
Chunk k goes to rank (k + offset) mod the world size, the offset turning with the stage and the
loop (so the rank that takes one chunk more is not always the same). Because a stage asks for the
points still robust, each stage re-deals the work: the points an earlier stage broke cost nothing
later, on any rank.

Each chunk draws its random numbers from generators of its own (`Batch.generator`), seeded by the
run seed, the stage, the stream and the chunk's first global index, so a point's random start
depends on the run and the chunk it belongs to, never on the rank, the world size or which chunks
ran before it on the same process. A randomized model draws from torch's global generator: while
a chunk is processed that generator is forked and seeded the same way, so the model's own noise is
the chunk's too (and the caller's generator state is left as it was); a random defense with a
generator of its own is reseeded alike (`Defense.reseed`). With the chunk and its
randomness fixed, a run on any number of processes computes the same batches with the same
numbers: on CPU the results are bit-identical.

After its loop a stage calls `Shard.merge` with the per-point tensors it wrote: every rank then
holds every rank's rows (gathered by global index, no padding), the context's `robust` flags
included, and the adversarial examples kept for the gallery (the lowest indices first, as one
process would keep them). Cheap probes whose counts every rank needs run `replicated`: every rank
runs every chunk, identically, and there is nothing to merge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import astuple, dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from bastion import distributed
from bastion.data import ImageSet
from bastion.defenses import find_defenses
from bastion.passes import PassCount, uncounted
from bastion.progress import progress_bar

__all__ = ["Batch", "Shard", "ShardedRun", "counted_once", "stream_seed", "sum_over_processes"]


class ShardedRun(Protocol):
    """What a `Shard` reads and merges: the run's data and settings, `robust`, and the gallery's examples."""

    model: nn.Module
    data: ImageSet
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    seed: int
    stage: str
    progress: bool
    robust: Tensor
    examples: list[Any]

    @property
    def example_budget(self) -> int:
        """How many adversarial examples are kept for the gallery."""


def stream_seed(seed: int, stage: str, stream: str = "") -> int:
    """A 63-bit seed for the random stream `stream` of stage `stage` in a run seeded with `seed`."""
    digest = hashlib.sha256(f"{seed}/{stage}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class Batch:
    """One chunk of points: global `indices` (CPU), images `x` and labels `y` on the model's device and dtype."""

    indices: Tensor
    x: Tensor
    y: Tensor
    seed: int
    stage: str

    @property
    def first(self) -> int:
        """The chunk's first global index: what names it."""
        return int(self.indices[0]) if self.indices.numel() else -1

    def generator(self, stream: str = "") -> torch.Generator:
        """A CPU generator for this chunk, seeded by (run seed, stage, `stream`, the chunk's first global index)."""
        return torch.Generator().manual_seed(stream_seed(self.seed, self.stage, f"{stream}@{self.first}"))


class Shard:
    """This process's chunks of `indices` (all of them with one process, or when `replicated`).

    Iterate it for the batches, write per-point results into tensors indexed by global index, then
    call `merge` with those tensors (a no-op with one process).
    """

    def __init__(self, ctx: ShardedRun, indices: Tensor, description: str, *, replicated: bool = False) -> None:
        self.ctx = ctx
        self.description = description
        here = distributed.world()
        count = -(-len(indices) // max(1, ctx.batch_size))
        chunks = list(torch.tensor_split(indices.cpu(), count)) if count else []
        self.replicated = replicated or not here.active
        # Which rank the first chunk goes to turns with the stage and the loop, so that the rank
        # that takes one chunk more than the others is not always the same one.
        start = (here.rank - stream_seed(ctx.seed, ctx.stage, description)) % max(1, here.size)
        self.chunks = chunks if self.replicated else chunks[start :: here.size]
        self.show = ctx.progress and here.is_main
        self.random_defenses = [d for d in find_defenses(ctx.model) if d.random]
        self._examples_before = len(ctx.examples)

    def __iter__(self) -> Iterator[Batch]:
        ctx = self.ctx
        total = sum(int(c.numel()) for c in self.chunks)
        with progress_bar(total, desc=f"{ctx.stage}: {self.description}" if ctx.stage else self.description,
                          enabled=self.show) as bar:
            for chunk in self.chunks:
                x, y = ctx.data.batch(chunk, device=ctx.device, dtype=ctx.dtype)
                batch = Batch(chunk, x, y, ctx.seed, ctx.stage)
                with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []), \
                        counted_once() if self.replicated else nullcontext():
                    seed = stream_seed(ctx.seed, ctx.stage, f"model@{batch.first}")
                    torch.manual_seed(seed)
                    for defense in self.random_defenses:
                        defense.reseed(seed)
                    yield batch
                bar.update(int(chunk.numel()))

    @property
    def handled(self) -> Tensor:
        """The global indices of this process's chunks."""
        return torch.cat(self.chunks) if self.chunks else torch.empty(0, dtype=torch.long)

    def merge(self, *tensors: Tensor) -> None:
        """Give every rank the rows each rank wrote.

        That is, the rows of `tensors` (indexed by global index, on the CPU), the context's
        `robust` flags, and the examples kept for the gallery.
        """
        ctx = self.ctx
        if self.replicated:
            self._trim_examples(ctx.examples[self._examples_before:])
            return
        rows = self.handled
        parts = distributed.all_gather(([t[rows] for t in tensors], rows, ctx.examples[self._examples_before:]))
        for values, part_rows, _ in parts:
            for tensor, value in zip(tensors, values, strict=True):
                tensor[part_rows] = value
        ctx.robust = distributed.all_reduce_and(ctx.robust)
        self._trim_examples([e for _, _, examples in parts for e in examples])

    def _trim_examples(self, new: list[Any]) -> None:
        """The new examples of this loop, lowest indices first, within the gallery's budget."""
        ctx = self.ctx
        room = max(0, ctx.example_budget - self._examples_before)
        ctx.examples = ctx.examples[: self._examples_before] + sorted(new, key=lambda e: e.index)[:room]


def counted_once() -> AbstractContextManager[None]:
    """For work every process does alike: its passes are counted by rank 0 only (summed, they count once)."""
    here = distributed.world()
    return uncounted() if here.active and not here.is_main else nullcontext()


def sum_over_processes(passes: PassCount) -> PassCount:
    """The passes every process counted, summed (with one process, `passes`)."""
    if not distributed.world().active:
        return passes
    return PassCount(*(int(v) for v in distributed.all_reduce_sum(list(astuple(passes)))))
