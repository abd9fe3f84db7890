"""FAB and FAB-T against closed-form minimal perturbations of linear models, the exact box-constrained
projections, and the zoo MNIST model."""

import math

import pytest
import torch
from torch import nn

from bastion.attacks import ATTACKS, FAB, FABT
from bastion.attacks._fab_projections import project_onto_hyperplane
from bastion.errors import InputError
from bastion.threat import ThreatModel
from tests.conftest import linear_model

D = 36
UNBOUNDED = 1e6  # ThreatModel refuses eps = inf; this radius never binds in [0, 1]^36


def _dual(v, norm):
    return v.abs().sum(-1) if norm == "linf" else v.norm(dim=-1)


def _optimal_step(v, rho, norm):
    """The minimal step that lowers <v, x> by rho * ||v||_dual: -rho sign(v) (Linf), -rho v / ||v|| (L2)."""
    direction = torch.sign(v) if norm == "linf" else v / v.norm(dim=-1, keepdim=True)
    return -rho[:, None] * direction


def _two_class_case(seed=0, n=60):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, generator=g)
    x = 0.3 + 0.4 * torch.rand(n, 1, 6, 6, generator=g)
    bias = -float((x.flatten(1) @ w).mean())  # centre the margins so the boundary lies near the points
    margin = x.flatten(1) @ w + bias
    return linear_model(w, bias), w, x, (margin > 0).long(), margin.abs()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ["fab", "fab-t"])
def test_minimal_norm_on_a_two_class_linear_model(name, norm):
    model, w, x, y, margin = _two_class_case()
    rho = margin / _dual(w, norm)  # the exact minimal adversarial norm
    # Interior points: the optimal step keeps every pixel in [0, 1], so the box does not bind.
    step = _optimal_step(w.expand(len(x), -1) * torch.where(y == 1, 1.0, -1.0)[:, None], rho, norm)
    keep = ((x.flatten(1) + step).amin(1) > 0.0) & ((x.flatten(1) + step).amax(1) < 1.0)
    assert keep.sum() >= 40
    result = ATTACKS.create(name)(model, x[keep], y[keep], ThreatModel(norm, UNBOUNDED),
                                  generator=torch.Generator().manual_seed(0))
    assert result.success.all()
    ratio = result.norms / rho[keep]
    assert ratio.min() >= 1 - 1e-4 and ratio.max() <= 1.05


def _multiclass_case(seed=1, n=120, classes=5):
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(D, classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, D, generator=g))
        layer.bias.zero_()
    model = nn.Sequential(nn.Flatten(), layer).eval()
    x = 0.3 + 0.4 * torch.rand(n, 1, 6, 6, generator=g)
    with torch.no_grad():
        layer.bias.copy_(-model(x).mean(0))  # balance the classes
        logits = model(x)
    return model, layer.weight.detach(), x, logits.argmax(1), logits


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_t_reaches_the_minimal_targeted_perturbation(norm):
    model, weight, x, y, logits = _multiclass_case()
    target = (y + 1 + torch.arange(len(y)) % 4) % 5
    rows = torch.arange(len(y))
    v = weight[y] - weight[target]  # z_y - z_t = <v, x> + const
    rho = (logits[rows, y] - logits[rows, target]) / _dual(v, norm)
    z = x.flatten(1) + 1.001 * _optimal_step(v, rho, norm)
    with torch.no_grad():
        lands_on_target = model(z).argmax(1) == target
    # Points whose half-space optimum is labelled t and stays in the box: there it is the exact minimum.
    keep = lands_on_target & (z.amin(1) > 0) & (z.amax(1) < 1)
    assert keep.sum() >= 15
    result = FABT()(model, x[keep], y[keep], ThreatModel(norm, UNBOUNDED), target=target[keep],
                    generator=torch.Generator().manual_seed(0))
    assert result.success.all()
    ratio = result.norms / rho[keep]
    assert ratio.min() >= 1 - 1e-4 and ratio.max() <= 1.05


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_untargeted_fab_finds_the_closest_boundary_of_a_multiclass_linear_model(norm):
    model, weight, x, y, logits = _multiclass_case(seed=2, n=60)
    v = weight[y][:, None, :] - weight[None, :, :]  # (n, K, D): z_y - z_j
    gaps = logits.gather(1, y[:, None]) - logits
    dist = (gaps / _dual(v, norm).clamp_min(1e-12)).scatter(1, y[:, None], math.inf)
    rho, j = dist.min(1)  # crossing the closest boundary z_y = z_j is necessary and sufficient
    rows = torch.arange(len(y))
    z = x.flatten(1) + _optimal_step(v[rows, j], rho, norm)
    keep = (z.amin(1) > 0) & (z.amax(1) < 1)
    result = FAB()(model, x[keep], y[keep], ThreatModel(norm, UNBOUNDED), generator=torch.Generator().manual_seed(0))
    assert result.success.all()
    ratio = result.norms / rho[keep]
    assert ratio.min() >= 1 - 1e-4 and ratio.max() <= 1.05


def test_points_whose_minimal_norm_exceeds_eps_come_back_unfooled():
    model, w, x, y, margin = _two_class_case(seed=3)
    rho = margin / w.abs().sum()
    eps = float(rho.median())
    result = FABT()(model, x, y, ThreatModel("linf", eps))
    assert not result.success[rho > eps].any()
    assert result.success[rho * 1.05 < eps].all()
    assert (result.norms <= eps + 1e-6).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_is_exact_and_stays_in_the_box(norm):
    g = torch.Generator().manual_seed(4)
    t = torch.rand(300, 20, generator=g, dtype=torch.float64)
    w = torch.randn(300, 20, generator=g, dtype=torch.float64)
    w[:, :3] = 0.0  # coordinates the hyperplane ignores must not move
    b = (w * torch.rand(300, 20, generator=g, dtype=torch.float64)).sum(1) + 3 * torch.randn(300, generator=g,
                                                                                              dtype=torch.float64)
    d = project_onto_hyperplane(t, w, b, norm)
    # Reference: bisection on the common step tau of d_i = -sign(w_i) min(tau s_i, room_i) (oriented w).
    sign = torch.where((w * t).sum(1) >= b, 1.0, -1.0).to(w.dtype)[:, None]
    w_o, c = w * sign, ((w * t).sum(1) - b).abs()
    room = torch.where(w_o > 0, t, 1 - t)
    speed = w_o.abs() if norm == "l2" else torch.ones_like(w_o)

    def decrease(tau):
        return (w_o.abs() * torch.minimum(tau[:, None] * speed, room)).sum(1)

    low, high = torch.zeros(300, dtype=torch.float64), torch.full((300,), 1e6, dtype=torch.float64)
    for _ in range(200):
        mid = (low + high) / 2
        enough = decrease(mid) >= c
        low, high = torch.where(enough, low, mid), torch.where(enough, mid, high)
    expected = -torch.sign(w_o) * torch.minimum(high[:, None] * speed, room)
    feasible = decrease(torch.full((300,), 1e9, dtype=torch.float64)) >= c
    assert 0 < int((~feasible).sum()) < 300, "the case mixes reachable and unreachable hyperplanes"
    assert torch.allclose(d, expected, atol=1e-9)
    assert ((t + d) >= 0).all() and ((t + d) <= 1).all() and (d[:, :3] == 0).all()
    assert torch.allclose(((w * (t + d)).sum(1) - b)[feasible], torch.zeros(1, dtype=torch.float64), atol=1e-9)


@pytest.fixture(scope="module")
def mnist():
    from bastion.data import load_dataset
    from bastion.models import load_zoo_model

    model = load_zoo_model("mnist-cnn")
    data = load_dataset("mnist-sample:eval", limit=50)
    x, y = data.images.float(), data.labels
    x = x / 255 if data.images.dtype == torch.uint8 else x
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    return model, x[correct][:25], y[correct][:25]


# L2 eps 2.5, not 2.0: at 2.0 this model keeps about 12-20% robust accuracy against FAB-T and PGD-100 alike.
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.3), ("l2", 2.5)])
def test_fab_t_breaks_the_zoo_mnist_model(mnist, norm, eps):
    model, x, y = mnist
    threat = ThreatModel(norm, eps)
    result = FABT(steps=30)(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert result.success.float().mean() > 0.9
    assert threat.contains(x, result.x_adv).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


def test_same_seed_same_result_with_random_restarts(mnist):
    model, x, y = mnist
    threat = ThreatModel("l2", 0.5)  # small: most points stay robust and run the random restarts
    attack = FABT(steps=10, n_restarts=2, n_targets=2)
    a = attack(model, x[:10], y[:10], threat, generator=torch.Generator().manual_seed(3))
    b = attack(model, x[:10], y[:10], threat, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert a.x_adv.min() >= 0 and a.x_adv.max() <= 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_weaken_the_result(norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel(norm, 0.03 if norm == "linf" else 0.15)
    one = FAB(steps=10)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    many = FAB(steps=10, n_restarts=3)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert (many.success | ~one.success).all()


def test_gradient_cost_per_step(tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel("linf", 0.01)  # tiny: nothing is fooled within eps, so every run goes all the way
    untargeted = FAB(steps=4)(tiny_cnn, x, y, threat)
    assert untargeted.passes.backward == 4 * 3  # the Jacobian of the K - 1 = 3 logit differences
    targeted = FABT(steps=4, n_targets=2)(tiny_cnn, x, y, threat)
    assert targeted.passes.backward == 2 * 4  # one backward per step and target class
    assert targeted.passes.forward == 1 + 1 + 2 * 4 * 2 + 1  # ranking, robust check, 2 per step, final check


def test_bad_hyperparameters_are_refused():
    for kwargs in ({"steps": 0}, {"n_restarts": 0}, {"alpha_max": 1.5}, {"eta": 0.0}, {"beta": 0.0}):
        with pytest.raises(InputError):
            FAB(**kwargs)
    with pytest.raises(InputError):
        FABT(n_targets=0)
    assert FABT().settings() == {"steps": 100, "n_restarts": 1, "n_targets": 9, "alpha_max": 0.1, "eta": 1.05,
                                 "beta": 0.9}
