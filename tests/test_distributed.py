"""`bastion.distributed` without a launcher: a world of one, devices refused before joining a group."""

from __future__ import annotations

import pytest
import torch

from bastion.distributed import World, all_reduce_sum, broadcast_object, gather_by_index, setup, world
from bastion.errors import InputError


def test_without_torchrun_nothing_is_initialized(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert setup("cpu") == World(device="cpu") and world() == World()
    assert gather_by_index([(2, "c"), (0, "a"), (1, "b")]) == ["a", "b", "c"]
    assert broadcast_object({"x": 1}) == {"x": 1} and all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    with pytest.raises(RuntimeError, match="same index"):
        gather_by_index([(0, "a"), (0, "b")])


@pytest.mark.parametrize(("device", "message"), [("cuda:1", "each process takes cuda:LOCAL_RANK"),
                                                 ("cuda", "CUDA is not available")])
def test_a_device_the_ranks_cannot_share_is_refused_in_one_line(monkeypatch, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(InputError, match=message):
        setup(device)
