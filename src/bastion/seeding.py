"""One rule for randomness everywhere: pass a `torch.Generator`, or a `seed` that makes one; never global state."""

from __future__ import annotations

import torch

from bastion.errors import InputError

__all__ = ["resolve_generator"]


def resolve_generator(generator: torch.Generator | None, seed: int | None,
                      device: torch.device | str = "cpu") -> torch.Generator | None:
    """The generator to draw from: `generator`, or a new one on `device` seeded with `seed` (not both)."""
    if seed is None:
        return generator
    if generator is not None:
        raise InputError("give a generator or a seed, not both")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)
