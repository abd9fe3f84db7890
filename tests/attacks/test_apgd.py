"""APGD, APGD-DLR and APGD-T: strength against PGD on a trained model, closed-form optima on linear models,
the paper's checkpoint schedule, step-size adaptation, restarts, EOT and pass budgets."""

import math

import pytest
import torch
from torch import nn

from bastion.attacks import APGD, APGDDLR, APGDT, FGSM, PGD
from bastion.attacks.apgd import checkpoint_schedule
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models.zoo import load_zoo_model
from bastion.threat import ThreatModel
from tests.conftest import linear_model

D = 36
TRAINED_EPS = {"linf": 0.1, "l2": 1.5}  # the zoo CNN is about half broken at these radii


def _seed(s=0):
    return torch.Generator().manual_seed(s)


@pytest.fixture(scope="module")
def trained():
    """The zoo's MNIST CNN (about 99% clean accuracy) and 100 evaluation points."""
    x, y = load_dataset("mnist-sample:eval", limit=100).batch(slice(None))
    return load_zoo_model("mnist-cnn"), x, y


def _linear_case(seed=0, n=200):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, generator=g)
    x = 0.3 + 0.4 * torch.rand(n, 1, 6, 6, generator=g)  # interior: the box never binds for eps <= 0.1
    margin = x.flatten(1) @ w
    return linear_model(w), w, x, (margin > 0).long(), margin.abs()


def _margin(model, x, y):
    with torch.no_grad():
        logits = model(x)
    return (logits.gather(1, y[:, None]) - logits.gather(1, (1 - y)[:, None])).squeeze(1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_ce_is_at_least_as_strong_as_pgd_with_the_same_budget(norm, trained):
    model, x, y = trained
    threat = ThreatModel(norm, TRAINED_EPS[norm])
    pgd = PGD(steps=10, n_restarts=1)(model, x, y, threat, generator=_seed())
    apgd = APGD(steps=10, n_restarts=1)(model, x, y, threat, generator=_seed())
    assert 0 < int((~apgd.success).sum()) < len(x), "the radius should leave the model partly robust"
    assert int((~apgd.success).sum()) <= int((~pgd.success).sum())
    assert apgd.passes.backward_samples <= pgd.passes.backward_samples


def test_apgd_t_breaks_about_as_many_points_as_apgd_ce(trained):
    model, x, y = trained
    threat = ThreatModel("linf", TRAINED_EPS["linf"])
    ce = APGD(steps=10)(model, x, y, threat, generator=_seed())
    t = APGDT(steps=10, n_targets=3)(model, x, y, threat, generator=_seed())
    assert t.success.any()
    assert int(t.success.sum()) >= int(ce.success.sum()) - 2
    assert threat.contains(x, t.x_adv).all()
    with torch.no_grad():
        assert torch.equal(t.success, model(t.x_adv).argmax(1) != y), "APGD-T without a target is judged untargeted"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_reaches_the_analytic_worst_case_on_a_linear_model(norm):
    model, w, x, y, margin = _linear_case()
    eps = 0.05 if norm == "linf" else 0.5
    dual = w.abs().sum() if norm == "linf" else w.norm()
    worst = margin - eps * dual  # smallest margin reachable in the ball
    clear = worst.abs() > 1e-3 * dual
    result = APGD(steps=50)(model, x, y, ThreatModel(norm, eps), generator=_seed())
    assert torch.equal(result.success[clear], (worst < 0)[clear])
    robust = ~result.success
    achieved = _margin(model, result.x_adv[robust], y[robust])
    assert torch.allclose(achieved, worst[robust], rtol=0, atol=1e-3 * float(dual))


def test_first_step_is_a_2eps_step_without_momentum():
    # From any start in the Linf ball a step of 2 eps along sign(grad) lands on the optimal corner,
    # so one iteration of APGD equals FGSM on a linear model wherever the model stays robust.
    model, w, x, y, margin = _linear_case(seed=1)
    threat = ThreatModel("linf", 0.05)
    robust = margin - 0.05 * w.abs().sum() > 1e-3
    result = APGD(steps=1)(model, x, y, threat, generator=_seed())
    assert torch.allclose(result.x_adv[robust], FGSM()(model, x, y, threat).x_adv[robust], atol=1e-6)


class _Bowl(nn.Module):
    """Two classes, logits (0, -k ||x - c||^2): class 0 always wins, and CE(y=0) peaks inside the ball at x = c."""

    def __init__(self, c):
        super().__init__()
        self.register_buffer("c", c)

    def forward(self, x):
        z1 = -10.0 * (x - self.c).flatten(1).pow(2).sum(1)
        return torch.stack([torch.zeros_like(z1), z1], dim=1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_step_size_halving_finds_an_interior_maximum(norm):
    # A fixed step of 2 eps would oscillate around c; the checkpoints halve it until APGD settles there.
    eps = 0.1 if norm == "linf" else 1.0
    threat = ThreatModel(norm, eps)
    x = torch.full((1, 1, 4, 4), 0.5)
    direction = 2 * torch.rand(x.shape, generator=_seed(3)) - 1
    c = x + 0.5 * eps * (direction if norm == "linf" else direction / direction.norm())  # halfway to the boundary
    model, y = _Bowl(c).eval(), torch.zeros(1, dtype=torch.long)
    result = APGD(steps=100)(model, x, y, threat, generator=_seed())
    assert float(threat.norm.measure(result.x_adv - c)) < 0.05 * eps


def test_checkpoint_schedule_follows_the_paper():
    assert checkpoint_schedule(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]  # as in fra31/auto-attack for 100 steps
    for steps in (1, 5, 10, 37, 100, 250, 1000):
        p, formula = [0.0, 0.22], []
        while p[-1] <= 1.0 + 1e-9:
            p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
        for pj in p[:-1]:
            w = math.ceil(round(pj * steps, 6))  # w_j = ceil(p_j N_iter), without float noise
            if not formula or w > formula[-1]:
                formula.append(w)
        assert checkpoint_schedule(steps) == formula
        assert all(0 <= w <= steps for w in formula)


@pytest.mark.parametrize("attack", [APGD(steps=8), APGDDLR(steps=8), APGDT(steps=8)], ids=repr)
def test_pass_counts_are_exact_when_nothing_is_fooled(attack, tiny_cnn, toy_batch):
    x, y = toy_batch
    result = attack(tiny_cnn, x, y, ThreatModel("linf", 0.0))  # nothing moves, so nothing is fooled
    runs = 3 if isinstance(attack, APGDT) else 1  # APGD-T: n_targets=9 clipped to 4 classes - 1
    ranking = len(x) if isinstance(attack, APGDT) else 0
    # Per run: a gradient at x^(0) ... x^(N-1), a forward at x^(0) ... x^(N); plus the final check.
    assert result.passes.backward_samples == runs * 8 * len(x)
    assert result.passes.forward_samples == ranking + runs * 9 * len(x) + len(x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_weaken_and_stay_within_budget(norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel(norm, 0.06 if norm == "linf" else 0.3)
    one = APGD(steps=5, n_restarts=1)(tiny_cnn, x, y, threat, generator=_seed())
    many = APGD(steps=5, n_restarts=4)(tiny_cnn, x, y, threat, generator=_seed())
    assert (many.success | ~one.success).all(), "a point fooled by the first restart stays fooled"
    assert many.passes.backward_samples <= 5 * 4 * len(x)
    # Later restarts only rerun the points the first one left robust.
    assert many.passes.backward_samples - one.passes.backward_samples <= 3 * 5 * int((~one.success).sum())


def test_same_seed_same_result_and_seeds_matter(trained):
    model, x, y = trained
    threat = ThreatModel("l2", TRAINED_EPS["l2"])
    a, b, c = (APGD(steps=3)(model, x[:20], y[:20], threat, generator=_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a.x_adv, b.x_adv) and not torch.equal(a.x_adv, c.x_adv)


def test_eot_averages_gradients(tiny_cnn, toy_batch):
    # On a deterministic model the average of two identical gradients is that gradient, exactly.
    x, y = toy_batch
    threat = ThreatModel("linf", 0.06)
    one = APGD(steps=6)(tiny_cnn, x, y, threat, generator=_seed())
    two = APGD(steps=6, eot_iter=2)(tiny_cnn, x, y, threat, generator=_seed())
    assert torch.equal(one.x_adv, two.x_adv)
    assert two.passes.backward_samples == 2 * one.passes.backward_samples


def test_targeted_apgd_ce_and_apgd_t_reach_the_target(tiny_cnn, toy_batch):
    x, y = toy_batch
    target = (y + 1) % 4
    threat = ThreatModel("linf", 0.5)
    for attack in (APGD(steps=20), APGDT(steps=20)):
        result = attack(tiny_cnn, x, y, threat, target=target, generator=_seed())
        assert result.success.float().mean() >= 0.75, attack
        assert torch.equal(result.success, result.predictions == target)


def test_apgd_dlr_needs_three_classes():
    model, _, x, y, _ = _linear_case(n=4)
    with pytest.raises(InputError, match="3 classes"):
        APGDDLR(steps=2)(model, x, y, ThreatModel("linf", 0.05))


def test_bad_hyperparameters_are_refused():
    for kwargs in ({"steps": 0}, {"n_restarts": 0}, {"eot_iter": 0}, {"rho": 1.5}, {"momentum": 0.0}, {"loss": "x"}):
        with pytest.raises(InputError):
            APGD(**kwargs)
    with pytest.raises(InputError):
        APGDT(n_targets=0)
    assert APGD().settings() == {
        "steps": 100,
        "n_restarts": 1,
        "loss": "ce",
        "rho": 0.75,
        "momentum": 0.75,
        "eot_iter": 1,
    }
