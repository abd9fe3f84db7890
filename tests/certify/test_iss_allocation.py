"""Radius mode's global sample allocation: the mean decline it promises, monotone, the same however split."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from bastion.certify.allocation import Pilot, allocate, size_grid
from bastion.certify.dataset import certify_dataset
from bastion.certify.iss import expected_radius, iss_sample_size, planning_p
from bastion.certify.plan import PILOT_STREAM, pilot_points, plan_samples
from bastion.certify.procedure import Procedure
from bastion.certify.votes import count_votes, image_generator
from bastion.data import ImageSet
from bastion.distributed import shard_chunks

SETTINGS = {"budget": 100_000, "alpha": 0.001, "sigma": 0.5}


def _pilots(seed: int = 0, count: int = 40) -> list[Pilot]:
    """A mix like the zoo noise model's: unanimous pilots, pA near 1 after 2,100 samples, middling, abstaining."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = rng.choice(["unanimous", "high", "middle", "low"])
        n = 2100 if kind in ("unanimous", "high") else 100
        k = {"unanimous": n, "high": n - rng.randint(1, 15), "middle": rng.randint(70, 97),
             "low": rng.randint(30, 52)}[kind]
        out.append(Pilot(index=3 * i + 1, top=rng.randrange(10), count=k, n=n))
    return out


def _declines(pilots: list[Pilot], sizes: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Each point's expected decline against n = budget at its planning pA, and whether it counts in the mean."""
    losses, counted = [], []
    for p in pilots:
        pa = planning_p(p.count, p.n)
        full, chosen = expected_radius(pa, np.array([100_000.0, float(sizes[p.index])]), 0.001, 0.5)
        losses.append(full - chosen)
        counted.append(full > 0)
    return np.array(losses), np.array(counted)


@pytest.mark.parametrize("decline", [0.02, 0.05, 0.1])
def test_the_plan_meets_its_mean_decline_for_fewer_samples_than_a_cap_per_point(decline):
    pilots = _pilots()
    sizes = allocate(pilots, decline=decline, **SETTINGS)
    losses, counted = _declines(pilots, sizes)
    assert set(sizes) == {p.index for p in pilots} and all(100 <= n <= 100_000 for n in sizes.values())
    assert 0 < counted.sum() < len(pilots)  # some points are expected to abstain: they do not count
    assert losses[counted].mean() <= decline + 1e-9
    assert losses.max() > decline  # a mean, not a cap: some point loses more than the decline
    assert all(sizes[p.index] == 100 for p, c in zip(pilots, counted, strict=True) if not c)
    per_point = sum(iss_sample_size(p.count, p.n, decline=decline, **SETTINGS) for p in pilots)
    assert sum(sizes.values()) < per_point  # a cap per point meets the mean too, at a higher cost


def test_a_smaller_decline_never_gives_a_point_fewer_samples():
    pilots = _pilots(seed=1)
    plans = [allocate(pilots, decline=d, **SETTINGS) for d in (1.0, 0.2, 0.1, 0.07, 0.05, 0.03, 0.01, 0.001)]
    assert all(n == 100 for n in plans[0].values())  # a decline this loose is met at the smallest size
    for looser, tighter in zip(plans, plans[1:], strict=False):
        assert all(tighter[i] >= looser[i] for i in looser)
    totals = [sum(plan.values()) for plan in plans]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    assert max(plans[-1].values()) == 100_000  # only the whole budget keeps a unanimous point's radius


def test_the_plan_does_not_depend_on_the_pilots_order_or_grouping():
    pilots = _pilots(seed=2)
    whole = allocate(pilots, decline=0.05, **SETTINGS)
    shuffled = pilots[::-1]
    random.Random(0).shuffle(shuffled)
    assert allocate(shuffled, decline=0.05, **SETTINGS) == whole
    with pytest.raises(ValueError, match="an index appears twice"):
        allocate([*pilots, pilots[0]], decline=0.05, **SETTINGS)


def test_the_size_grid_runs_from_the_smallest_size_to_the_budget():
    grid = size_grid(100, 100_000)
    assert grid[0] == 100 and grid[-1] == 100_000 and np.all(np.diff(grid) > 0)
    assert size_grid(100, 50).tolist() == [50]


class Threshold(nn.Module):
    """Class 1 when the first pixel is positive: under noise sigma, pA = Phi(x0 / sigma), from 0.5 to near 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.reshape(len(x), -1)[:, :1]
        return torch.cat([-v, v], dim=1)


def _data() -> ImageSet:
    x = torch.zeros(11, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([1.0, 0.05, 0.3, 0.9, 0.0, 0.6, 1.0, 0.15, 0.45, 0.8, 1.0])
    return ImageSet(x, torch.ones(11, dtype=torch.long), ["0", "1"], "threshold")


PROCEDURE = Procedure(kind="iss", n0=50, n=4000, alpha=0.01, decline=0.03)
RUN = {"sigma": 0.25, "procedure": PROCEDURE, "batch_size": 200, "seed": 7}


def test_the_plan_and_certificates_are_the_same_when_points_are_split_across_shards():
    model, data = Threshold(), _data()
    ids = list(range(100, 111))
    whole = plan_samples(model, data, indices=ids, **RUN)
    assert len({p.n for p in whole.values()}) > 2  # the points got different sizes
    for size in (2, 3):
        shards = [shard_chunks(len(ids), 4, rank, size) for rank in range(size)]
        parts = [pilot_points(model, data.subset(s), indices=[ids[p] for p in s], **RUN) for s in shards]
        for rank, shard in enumerate(shards):  # each rank pilots its share and gathers the others' pilots
            plan = plan_samples(model, data.subset(shard), indices=[ids[p] for p in shard], **RUN,
                                gather=lambda mine, rank=rank, parts=parts: [*parts[:rank], mine, *parts[rank + 1:]])
            assert plan == whole
    rows = certify_dataset(model, data, indices=ids, **RUN)
    for shard in shard_chunks(len(ids), 4, 1, 2), shard_chunks(len(ids), 4, 0, 2):
        part = certify_dataset(model, data.subset(shard), indices=[ids[p] for p in shard], plan=whole, **RUN)
        strip = [{k: v for k, v in r.items() if k != "seconds"} for r in part]
        assert strip == [{k: v for k, v in rows[p].items() if k != "seconds"} for p in shard]


def test_the_estimate_uses_fresh_samples_of_the_main_stream_and_counts_the_pilot():
    model, data = Threshold(), _data()
    ids = list(range(11))
    plan = plan_samples(model, data, indices=ids, **RUN)
    pilots = {p.index: p for p in pilot_points(model, data, indices=ids, **RUN)}
    rows = certify_dataset(model, data, indices=ids, **RUN)
    for row in rows:
        planned, x = plan[row["index"]], data.batch(slice(row["index"], row["index"] + 1))[0]
        assert row["n"] == planned.n and row["samples"] == planned.pilot + planned.n
        assert planned.pilot == pilots[row["index"]].n >= PROCEDURE.n0
        pilot = count_votes(model, x, PROCEDURE.n0, 0.25, 2, batch_size=200, sound=True,
                            generators=[image_generator(7, row["index"], stream=PILOT_STREAM)])
        assert int(pilot.argmax()) == planned.top  # the class came from the pilot's own stream
        votes = count_votes(model, x, planned.n, 0.25, 2, batch_size=200, sound=True,
                            generators=[image_generator(7, row["index"])])
        assert int(votes[0, planned.top]) == row["count"]  # the estimate: the main stream, from its start
    certified = [r for r in rows if r["prediction"] != -1]
    assert certified and all(r["p_lower"] > 0.5 for r in certified)
    assert any(r["prediction"] == -1 for r in rows)  # x0 = 0 is a coin flip
