"""APGD-fast: as strong as AutoAttack at a fraction of its passes, MALT's ranking, the give-up rule, pass counts."""

import pytest
import torch
from torch import nn

from bastion.attacks import FastAPGD
from bastion.attacks._hopeless import hopeless
from bastion.attacks._malt import malt_scores, malt_targets
from bastion.attacks._near_miss import near_misses
from bastion.attacks._odi import odi_start
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.losses import cw_margin
from bastion.models.zoo import load_zoo_model
from bastion.threat import ThreatModel

N = 40
# bastion's AutoAttack, version standard, seed 0, on the first 100 points of mnist-sample:eval against
# zoo:mnist-cnn-at at Linf eps 0.3 (4 minutes on one core, too slow for a unit test): 34 of the first 40
# points stay robust, and it spends 5,637 forward and 1,375 backward passes per point on the 100.
# `benchmarks/bench_fast.py --n 100 --models zoo:mnist-cnn-at` reruns both attacks side by side.
AA_ROBUST_OF_40, AA_PASSES_PER_POINT = 34, 5637 + 1375


def _seed(s=0):
    return torch.Generator().manual_seed(s)


@pytest.fixture(scope="module")
def robust_model_runs():
    """apgd-fast with and without giving up, on N points of the adversarially trained zoo CNN at eps 0.3."""
    x, y = load_dataset("mnist-sample:eval", limit=N).batch(slice(None))
    model, threat = load_zoo_model("mnist-cnn-at"), ThreatModel("linf", 0.3)
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    runs = {drop: FastAPGD(drop_hopeless=drop)(model, x, y, threat, generator=_seed()) for drop in (True, False)}
    return correct, runs


def test_as_strong_as_autoattack_for_a_tenth_of_the_passes(robust_model_runs):
    correct, runs = robust_model_runs
    result = runs[True]
    robust = int((correct & ~result.success).sum())
    assert 0 < robust <= AA_ROBUST_OF_40 + 1  # one point of tolerance
    passes = (result.passes.forward_samples + result.passes.backward_samples) / N
    assert passes <= AA_PASSES_PER_POINT / 10


def test_giving_up_spares_every_point_the_full_budget_breaks(robust_model_runs):
    correct, runs = robust_model_runs
    dropping, full = runs[True], runs[False]
    assert not (full.success & ~dropping.success).any(), "a point the full budget breaks was given up"
    assert dropping.passes.backward_samples < 0.75 * full.passes.backward_samples


def _linear(k=6, d=20, n=64, seed=0):
    """K-class linear model z = W x + b with rows of W at very different scales, and interior inputs."""
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(d, k)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(k, d, generator=g) * torch.logspace(-1, 1, k)[:, None])
        layer.bias.copy_(torch.randn(k, generator=g))
    model = nn.Sequential(nn.Flatten(), layer).eval()
    x = 0.4 + 0.2 * torch.rand(n, 1, 4, 5, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, layer.weight.detach(), x, y


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_malt_ranks_by_the_exact_distance_on_a_linear_model(norm):
    model, w, x, y = _linear()
    threat = ThreatModel(norm, 0.1)
    with torch.no_grad():
        logits = model(x)
    diff = w[y][:, None, :] - w[None, :, :]  # (B, K, d): w_y - w_t
    dual = diff.abs().sum(2) if norm == "linf" else diff.norm(dim=2)
    exact = (logits.gather(1, y[:, None]) - logits) / dual  # distance to each boundary y | t
    exact[torch.arange(len(y)), y] = torch.inf
    scores = malt_scores(model, x, y, threat.norm)
    assert torch.allclose(scores, exact, rtol=1e-4)
    nearest = malt_targets(model, x, y, threat.norm, 3)
    assert torch.equal(nearest[:, 0], exact.argmin(1))
    by_logit = logits.scatter(1, y[:, None], -torch.inf).argmax(1)
    assert (by_logit != nearest[:, 0]).any(), "the case should separate MALT from logit order"


def test_pass_counts_show_one_forward_per_backward(tiny_cnn, toy_batch):
    x, y = toy_batch
    attack = FastAPGD(steps=8, n_targets=2, target_steps=5, odi_steps=2, drop_hopeless=False)
    result = attack(tiny_cnn, x, y, ThreatModel("linf", 0.0))  # nothing moves, so nothing is fooled
    # Per point: ODI 2 + 2; untargeted run 8 backward, 9 forward; MALT 1 forward, 4 backward (one per class);
    # each of 2 targeted runs ODI 2 + 2, then 5 backward and 6 forward; the clean margins and the near-miss
    # check 1 forward each (no point moved, so none is near); the final check 1 forward.
    assert result.passes.backward_samples == (2 + 8 + 4 + 2 * (2 + 5)) * len(x)
    assert result.passes.forward_samples == (2 + 9 + 1 + 2 * (2 + 6) + 2 + 1) * len(x)
    giving_up = FastAPGD(steps=8, n_targets=2, target_steps=5, odi_steps=2)(tiny_cnn, x, y, ThreatModel("linf", 0.0))
    assert giving_up.passes.backward_samples < result.passes.backward_samples  # no progress at all: hopeless


def test_odi_steps_move_the_start_and_stop_at_a_fooled_point(tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel("linf", 0.1)
    start = threat.clip(x, x + threat.norm.random_init(x, threat.eps, _seed()))
    assert torch.equal(odi_start(tiny_cnn, x, start, y, threat, 0, _seed()), start)
    moved = odi_start(tiny_cnn, x, start, y, threat, 2, _seed())
    assert threat.contains(x, moved).all() and not torch.equal(moved, start)
    fooled_y = (y + 1) % 4  # every start is "fooled" for these labels: no point moves
    assert torch.equal(odi_start(tiny_cnn, x, start, fooled_y, threat, 2, _seed()), start)


def test_bad_hyperparameters_are_refused():
    for kwargs in ({"steps": 0}, {"target_steps": 0}, {"n_targets": -1}, {"odi_steps": -1}, {"slack": 0.0},
                   {"rho": 2.0}):
        with pytest.raises(InputError):
            FastAPGD(**kwargs)
    assert FastAPGD().settings()["n_targets"] == 3


def test_a_point_gives_up_only_after_two_slow_stretches_in_a_row():
    give_up = hopeless(steps=100, slack=4.0, batch=3)
    rows = torch.arange(3)
    f_prev, f_max = torch.tensor([-2.0, -2.0, -0.1]), torch.tensor([-2.0, -1.0, -0.1])  # flat, moving, flat
    assert not give_up(22, 0, rows, f_max, f_prev).any()  # one flat stretch: APGD may halve its step and move on
    # Row 0 stays flat and leaves; row 1 now stalls (its first slow stretch); row 2 resumes, then stalls again.
    left = give_up(41, 22, rows, torch.tensor([-2.0, -1.0, -0.05]), torch.tensor([-2.0, -1.0, -0.1]))
    assert left.tolist() == [True, False, False]
    left = give_up(57, 41, rows[1:], torch.tensor([-1.0, -0.05]), torch.tensor([-1.0, -0.05]))
    assert left.tolist() == [True, False]


def test_with_a_patience_of_one_a_point_leaves_at_its_first_slow_stretch():
    give_up = hopeless(steps=100, slack=4.0, batch=3, patience=1)
    rows = torch.arange(3)
    f_prev, f_max = torch.tensor([-2.0, -2.0, -0.1]), torch.tensor([-2.0, -1.0, -0.05])  # flat, moving, near
    assert give_up(22, 0, rows, f_max, f_prev).tolist() == [True, False, False]
    patient = hopeless(steps=100, slack=4.0, batch=3, patience=3)
    for k, last in ((22, 0), (41, 22)):
        assert not patient(k, last, rows, f_prev, f_prev).any()
    assert patient(57, 41, rows, f_prev, f_prev).tolist() == [True, True, True]


def test_near_misses_run_both_phases_again_and_only_they(tiny_cnn, toy_batch, monkeypatch):
    x, y = toy_batch
    settings = {"steps": 8, "n_targets": 2, "target_steps": 5, "odi_steps": 2, "drop_hopeless": False}
    threat = ThreatModel("linf", 0.0)  # nothing moves, so nothing is fooled and every round runs in full
    once = FastAPGD(**settings, near_restarts=0)(tiny_cnn, x, y, threat)
    # At eps 0 every best margin equals its clean margin: no point is a near miss, no round runs again, and
    # the clean margins and the check cost one forward pass each.
    again = FastAPGD(**settings, near_restarts=2)(tiny_cnn, x, y, threat)
    assert again.passes.backward_samples == once.passes.backward_samples
    assert again.passes.forward_samples == once.passes.forward_samples + 2 * len(x)
    # Two rounds in which only the first point is near: both phases again for it alone, and MALT's ranking of
    # it reused (no MALT pass): ODI 2 + untargeted 8 + 2 x (ODI 2 + targeted 5) backward, 2 + 9 + 2 x (2 + 6)
    # forward per round, plus the clean margins (the stubbed check costs nothing).
    first = torch.zeros(len(x), dtype=torch.bool)
    first[0] = True
    monkeypatch.setattr("bastion.attacks.fast.near_misses", lambda *args: first.clone())
    rounds = FastAPGD(**settings, near_restarts=2)(tiny_cnn, x, y, threat)
    assert rounds.passes.backward_samples == once.passes.backward_samples + 2 * (2 + 8 + 2 * (2 + 5))
    assert rounds.passes.forward_samples == once.passes.forward_samples + len(x) + 2 * (2 + 9 + 2 * (2 + 6))


def test_near_misses_are_the_robust_points_whose_margin_closed_most_of_the_clean_one(tiny_cnn, toy_batch):
    x, y = toy_batch
    clean = cw_margin(tiny_cnn(x), y).detach()
    near = near_misses(tiny_cnn, x, y, torch.zeros(len(x), dtype=torch.bool), clean * 2, 0.6)
    assert torch.equal(near, clean < 0)  # margin = clean > 0.6 x (2 x clean) when clean < 0
    fooled = torch.ones(len(x), dtype=torch.bool)
    assert not near_misses(tiny_cnn, x, y, fooled, clean * 2, 0.6).any()  # a fooled point is never near


def test_unknown_losses_are_refused():
    for kwargs in ({"loss": "dlr"}, {"near_loss": "l1"}, {"near": 1.0}, {"near_restarts": -1}, {"patience": 0}):
        with pytest.raises(InputError):
            FastAPGD(**kwargs)
