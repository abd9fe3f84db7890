"""Several processes under `torchrun`: the process group, each rank's device, and exchanges with rank 0.

`torchrun` (PyTorch's elastic launcher, https://pytorch.org/docs/stable/elastic/run.html) starts
one process per GPU (or per CPU share) and tells each one `WORLD_SIZE`, `RANK` and `LOCAL_RANK`
through the environment. This module reads them, joins the process group (NCCL when the rank
runs on CUDA, gloo otherwise, so the same code runs and is tested on CPUs) and offers the few
collective steps bastion needs. Without `torchrun`, or with one process, every function is a
no-op and nothing is initialized: a plain run behaves exactly as before.

Results are gathered by global index, never padded: `torch.utils.data.DistributedSampler`
repeats points to even out the shards, which biases evaluation-like metrics (pytorch #25162),
so it is used for training only.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bastion.errors import InputError

__all__ = ["World", "all_gather", "all_reduce_and", "all_reduce_sum", "barrier", "broadcast_object", "gather_by_index",
           "is_main", "launched", "restart_count", "session", "setup", "shard_chunks", "teardown", "unwrap", "world"]

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes of one run.

    Attributes:
        rank: Global rank, 0 .. size - 1 (rank 0 writes the outputs).
        size: Number of processes (`WORLD_SIZE`); 1 without torchrun.
        local_rank: Rank on this machine (`LOCAL_RANK`): the index of its GPU.
        device: The device this rank computes on, as a `--device` string, or None to let the
            model loader pick (a plain run).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str | None = None

    @property
    def active(self) -> bool:
        """Whether there is more than one process (a process group to talk to)."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one process that prints and writes."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{name}={value!r} in the environment is not an integer (set by torchrun)") from None


def launched() -> int:
    """The number of processes torchrun started (`WORLD_SIZE`), 1 without torchrun."""
    return max(1, _env_int("WORLD_SIZE", 1))


def restart_count() -> int:
    """How often torchrun restarted this group after a failure (`TORCHELASTIC_RESTART_COUNT`), 0 at first."""
    return _env_int("TORCHELASTIC_RESTART_COUNT", 0)


def world() -> World:
    """This process's place, from the initialized process group (or a world of one)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), _current_device())
    return World()


_DEVICE: list[str | None] = [None]


def _current_device() -> str | None:
    return _DEVICE[0]


def _rank_device(requested: str | None, local_rank: int) -> str | None:
    """`cuda:LOCAL_RANK` when CUDA is asked for (or auto and available), the requested device otherwise."""
    if requested is not None and requested.startswith("cuda"):
        if requested != "cuda":
            raise InputError(f"--device {requested}: under torchrun each process takes cuda:LOCAL_RANK; give "
                             "--device cuda (or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs")
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but CUDA is not available here")
    if requested in (None, "auto", "cuda") and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                             "start at most that many processes per machine (--nproc-per-node)")
        return f"cuda:{local_rank}"
    if requested in (None, "auto"):
        return "cpu"  # several processes on one machine share its CPUs, not an Apple GPU
    return requested


def _timeout() -> timedelta:
    """How long a rank waits for the others at a collective (`BASTION_DIST_TIMEOUT` seconds, default 6 hours).

    Rank 0 waits at the final gather while the others finish their last chunk, which can take long
    on large models; a rank that dies does not leave the others waiting, since torchrun stops the group.
    """
    seconds = _env_int("BASTION_DIST_TIMEOUT", 6 * 3600)
    if seconds < 1:
        raise InputError(f"BASTION_DIST_TIMEOUT must be a positive number of seconds, got {seconds}")
    return timedelta(seconds=seconds)


def setup(device: str | None = None) -> World:
    """Join torchrun's process group if there is one; return this process's `World`.

    Args:
        device: The user's `--device` (None or "auto", "cpu", "cuda", "cuda:N"). Under torchrun
            "auto" and "cuda" become `cuda:LOCAL_RANK` (that GPU is made current) when CUDA is
            available, else the CPU; NCCL is the backend on CUDA, gloo otherwise.

    Returns:
        The `World`; without torchrun (or with one process) `World(device=device)`, nothing initialized.
    """
    size = launched()
    if size == 1:
        return World(device=device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    placed = _rank_device(device, local_rank)
    on_cuda = placed is not None and placed.startswith("cuda")
    if placed is not None and on_cuda:
        torch.cuda.set_device(torch.device(placed))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo", timeout=_timeout())
    _DEVICE[0] = placed
    return World(rank, size, local_rank, placed)


def teardown(*, finished: bool = False) -> None:
    """Leave the process group (if this module or anyone joined one), so that the process can exit cleanly.

    Args:
        finished: The command ended without an error: every rank waits at a final barrier first,
            so no rank leaves while another still exchanges with it (after an error there is no
            barrier: the other ranks may never reach it, and torchrun stops them).

    Before and after `destroy_process_group` the garbage collector runs: a `DistributedDataParallel`
    wrapper in a reference cycle, and the asynchronous work objects of gloo it holds, are freed now,
    while the interpreter is whole. Freed during interpreter finalization instead, their tensors
    take the GIL from a gloo worker thread and the process aborts ("terminate called without an
    active exception", SIGABRT) after the work is done (pytorch #179291, #190489), so torchrun
    reports a finished job as failed.
    """
    if dist.is_available() and dist.is_initialized():
        if finished and dist.get_world_size() > 1:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()
        gc.collect()
    _DEVICE[0] = None


@contextmanager
def session(device: str | None = None) -> Iterator[World]:
    """`setup` on entry, `teardown` on exit (after a final barrier when the body ended without an error)."""
    finished = False
    try:
        yield setup(device)
        finished = True
    finally:
        teardown(finished=finished)


def is_main() -> bool:
    """Whether this process is rank 0 (always true without torchrun)."""
    return world().is_main


def barrier() -> None:
    """Wait until every process gets here (a no-op with one process)."""
    if world().active:
        dist.barrier()


def shard_chunks(count: int, chunk: int, rank: int, size: int) -> list[int]:
    """The positions 0 .. count - 1 that `rank` of `size` processes takes: chunks of `chunk`, dealt round robin.

    The chunks do not depend on the number of processes, so work done chunk by chunk (e.g. the
    forward passes of `certify_dataset`, whose groups are these chunks) is the same whichever
    process does it. Every position goes to exactly one rank; no padding.
    """
    if chunk < 1 or size < 1 or not 0 <= rank < size:
        raise InputError(f"need chunk >= 1 and 0 <= rank < size, got chunk={chunk}, rank={rank}, size={size}")
    starts = range(rank * chunk, count, size * chunk)
    return [p for start in starts for p in range(start, min(start + chunk, count))]


def gather_by_index(items: Sequence[tuple[int, T]]) -> list[T] | None:
    """Collect (global index, item) pairs of all ranks on rank 0, ordered by index.

    Returns:
        On rank 0 every item sorted by its index (an index seen twice is an error, not silently
        dropped or duplicated); None on the other ranks. With one process, the items sorted.
    """
    pairs = list(items)
    here = world()
    if here.active:
        parts: list[list[tuple[int, T]]] | None = [[] for _ in range(here.size)] if here.is_main else None
        dist.gather_object(pairs, parts, dst=0)
        if parts is None:
            return None
        pairs = [pair for part in parts for pair in part]
    indices = [index for index, _ in pairs]
    if len(set(indices)) != len(indices):
        raise RuntimeError("two processes returned the same index: the shards overlap")
    return [item for _, item in sorted(pairs, key=lambda pair: pair[0])]


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (with one process, `obj` itself)."""
    if not world().active:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    value: T = box[0]
    return value


def all_gather(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank (with one process, `[obj]`)."""
    here = world()
    if not here.active:
        return [obj]
    parts: list[Any] = [None] * here.size
    dist.all_gather_object(parts, obj)
    return parts


def all_reduce_and(mask: torch.Tensor) -> torch.Tensor:
    """The element-wise AND of a boolean mask over all ranks (a CPU tensor; with one process, `mask`)."""
    if not world().active:
        return mask
    device = _current_device() if dist.get_backend() == "nccl" else "cpu"
    values = mask.to(device=device, dtype=torch.uint8)
    dist.all_reduce(values, op=dist.ReduceOp.MIN)
    return values.cpu().bool()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums of `values` over all ranks, in float64 (with one process, `values`)."""
    if not world().active:
        return [float(v) for v in values]
    device = _current_device() if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu().tolist()]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a `DistributedDataParallel` wrapper (any other module is returned as it is).

    Attacks run inside training differentiate through this unwrapped module: a forward pass of
    the wrapper with gradients on arms its gradient all-reduce, which the attack's input-only
    backward never completes (the trap of MART #125 and pytorch #22436).
    """
    if isinstance(model, DistributedDataParallel):
        inner: nn.Module = model.module
        return inner
    return model
