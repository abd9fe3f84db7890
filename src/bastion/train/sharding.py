"""What the training loop does differently under torchrun: DDP, a distributed sampler, per-rank randomness.

Data-parallel training (Li et al., "PyTorch Distributed", VLDB 2020, arXiv:2006.15704): every
process holds the whole model, trains on its shard of each epoch, and `DistributedDataParallel`
averages the gradients over the processes in the backward pass, so all replicas take the same
optimizer step. The attacks of adversarial training run on the unwrapped module
(`bastion.distributed.unwrap`, used by `bastion.train._inner.perturb`): their input-gradient
backward passes must not arm DDP's all-reduce (MART #125, pytorch #22436).

Everything here follows from (seed, epoch, rank), so a run resumed from rank 0's checkpoint
continues the same way with any number of processes.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from bastion.distributed import World, all_reduce_sum

__all__ = ["epoch_order", "reduce_totals", "shard_steps", "wrap"]


def wrap(model: nn.Module, world: World) -> nn.Module:
    """`DistributedDataParallel(model)` on the model's own device when there are several processes, else `model`."""
    if not world.active:
        return model
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def shard_steps(size: int, batch_size: int, world: World) -> int:
    """Optimizer steps per epoch: each process gets ceil(size / processes) points (the sampler pads)."""
    per_rank = -(-size // world.size)
    return -(-per_rank // batch_size)


def _seed(*parts: int) -> int:
    digest = hashlib.blake2b(b"\x00".join(str(p).encode() for p in parts), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def epoch_order(size: int, epoch: int, seed: int, world: World, generator: torch.Generator) -> Tensor:
    """The indices this process trains on in `epoch`, in order.

    One process: `torch.randperm(size, generator=generator)`, as a plain run always did. Several:
    `DistributedSampler` with `set_epoch(epoch)` (every process shuffles with the same seed and
    takes its share; the last shard is padded with repeated points, harmless in training), and
    `generator` and the global RNG (dropout) are reseeded from (seed, epoch, rank): each process
    draws its own augmentations and attack starts, reproducibly whatever happened before.
    """
    if not world.active:
        return torch.randperm(size, generator=generator)
    generator.manual_seed(_seed(seed, epoch, world.rank))
    torch.manual_seed(_seed(seed, epoch, world.rank, 1))
    sampler: DistributedSampler[int] = DistributedSampler(cast(Any, range(size)), num_replicas=world.size,
                                                          rank=world.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def reduce_totals(totals: dict[str, float], world: World) -> dict[str, float]:
    """The epoch's running sums (loss, counts) added over all processes."""
    if not world.active:
        return totals
    keys = sorted(totals)
    return dict(zip(keys, all_reduce_sum([totals[k] for k in keys]), strict=True))
