"""Square Attack: it breaks gradient masking, follows the paper's p schedule, stays in the ball, and saves queries."""

import pytest
import torch
from torch import nn

from bastion.attacks import ATTACKS, PGD, Square
from bastion.attacks.square import p_schedule
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models import load_zoo_model
from bastion.threat import ThreatModel


class Round(nn.Module):
    """Quantizes inputs to 5 levels: the input gradient is zero almost everywhere (shattered gradients)."""

    def forward(self, x):
        return torch.round(x * 4) / 4


class Recorder(nn.Module):
    """Passes inputs through and records the batch size of every query."""

    def __init__(self, model):
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x):
        self.sizes.append(int(x.shape[0]))
        return self.model(x)


@pytest.fixture(scope="module")
def mnist():
    data = load_dataset("mnist-sample:eval", limit=100)
    x, y = data.batch(slice(0, 100))
    return load_zoo_model("mnist-cnn"), x, y


def _seed(seed=0):
    return torch.Generator().manual_seed(seed)


def _accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_square_breaks_a_model_with_zero_input_gradients_where_pgd_does_not(mnist):
    base, x, y = mnist
    model = nn.Sequential(Round(), base).eval()
    x_grad = x[:8].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x_grad).logsumexp(1).sum(), x_grad)
    assert torch.count_nonzero(grad) == 0, "the rounding model must mask gradients completely"
    clean = _accuracy(model, x, y)
    threat = ThreatModel("linf", 0.3)
    square = Square(n_queries=300)(model, x, y, threat, generator=_seed())
    pgd = PGD(steps=20)(model, x, y, threat, generator=_seed())
    assert clean > 0.95
    assert 1 - square.success_rate < 0.3  # measured: 0.99 clean -> 0.01
    assert 1 - pgd.success_rate > clean - 0.05  # only PGD's random start can move the point (measured 0.98)
    assert square.passes.backward == 0


@pytest.mark.skipif("apgd-ce" not in ATTACKS.names(), reason="APGD is not registered yet")
def test_apgd_does_not_break_the_rounding_model_either(mnist):
    base, x, y = mnist
    model, x, y = nn.Sequential(Round(), base).eval(), x[:50], y[:50]
    result = ATTACKS.create("apgd-ce")(model, x, y, ThreatModel("linf", 0.3), generator=_seed())
    assert 1 - result.success_rate > _accuracy(model, x, y) - 0.05


def test_p_schedule_halves_at_the_documented_iterations():
    # (iteration, divisor of p_init): p halves after iterations 10, 50, 200, ..., 8000 of 10,000.
    iterations = [0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2000, 2001, 4000, 4001, 6000, 6001, 8000, 8001]
    divisors = [1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 512]
    for iteration, divisor in zip(iterations, divisors, strict=True):
        assert p_schedule(0.8, iteration, 10000) == 0.8 / divisor, iteration
    # With 1,000 queries the same schedule runs ten times faster.
    for iteration, divisor in [(1, 1), (2, 2), (5, 2), (6, 4), (20, 4), (21, 8), (100, 16), (101, 32), (801, 512)]:
        assert p_schedule(0.8, iteration, 1000) == 0.8 / divisor, iteration
    assert p_schedule(0.8, 11, 1000, rescale=False) == 0.4


def test_l2_stays_in_the_ball_and_reduces_accuracy(mnist):
    base, x, y = mnist
    x, y = x[:50], y[:50]
    threat = ThreatModel("l2", 2.0)
    result = Square(n_queries=300)(base, x, y, threat, generator=_seed())
    assert (threat.norm.measure(result.x_adv - x) <= 2.0 + 1e-5).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    clean = _accuracy(base, x, y)
    assert 1 - result.success_rate < clean - 0.1  # measured: 0.98 clean -> 0.76


def test_linf_perturbation_is_plus_or_minus_eps_wherever_the_box_allows(mnist):
    base, x, y = mnist
    x, y = x[:20], y[:20]
    eps = 0.1
    result = Square(n_queries=50)(base, x, y, ThreatModel("linf", eps), generator=_seed())
    delta = result.x_adv - x
    at_bound = (result.x_adv == 0) | (result.x_adv == 1)
    assert (((delta.abs() - eps).abs() < 1e-6) | at_bound).all()


def test_queries_stay_within_budget_and_fooled_points_stop(mnist):
    base, x, y = mnist
    y = y.clone()
    y[:5] = (y[:5] + 1) % 10  # wrong labels: fooled by the clean input, so never queried again
    with torch.no_grad():
        wrong = base(x).argmax(1) != y
    model, n_queries = Recorder(base), 200
    result = Square(n_queries=n_queries)(model, x, y, ThreatModel("linf", 0.3), generator=_seed())
    sizes = model.sizes
    assert sizes[0] == len(x) and sizes[1] == len(x) - int(wrong.sum())  # clean check, then the initial point
    assert all(a >= b for a, b in zip(sizes[1:-1], sizes[2:-1], strict=False)), "only unfooled points are queried"
    assert torch.equal(result.x_adv[wrong], x[wrong])
    # Budget: the clean check, n_queries per point, the final check by Attack.__call__.
    assert result.passes.forward_samples == sum(sizes) <= (n_queries + 2) * len(x)
    assert result.passes.forward_samples < 0.2 * n_queries * len(x)  # most points fall within a few queries


def test_restarts_only_add_successes(tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel("l2", 0.4)
    one = Square(n_queries=50)(tiny_cnn, x, y, threat, generator=_seed())
    three = Square(n_queries=50, n_restarts=3)(tiny_cnn, x, y, threat, generator=_seed())
    assert (three.success | ~one.success).all() and three.success.sum() >= one.success.sum()
    assert three.passes.forward_samples - one.passes.forward_samples <= 2 * 50 * int((~one.success).sum())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_seed_same_result_other_seed_other_result(mnist, norm):
    base, x, y = mnist
    x, y = x[:10], y[:10]
    threat = ThreatModel(norm, 0.05 if norm == "linf" else 0.5)
    a, b, c = (Square(n_queries=20)(base, x, y, threat, generator=_seed(s)) for s in (3, 3, 4))
    assert torch.equal(a.x_adv, b.x_adv) and a.passes == b.passes
    assert not torch.equal(a.x_adv, c.x_adv)


def test_targeted_reaches_the_target(mnist):
    base, x, y = mnist
    x, y = x[:20], y[:20]
    target = (y + 1) % 10
    result = Square(n_queries=300)(base, x, y, ThreatModel("linf", 0.3), target=target, generator=_seed())
    assert result.success_rate > 0.5
    assert torch.equal(result.success, result.predictions == target)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_non_square_multichannel_images(norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 10, 5)).eval()
    x = torch.rand(12, 3, 6, 10, generator=_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    threat = ThreatModel(norm, 0.3 if norm == "linf" else 3.0)
    result = Square(n_queries=100)(model, x, y, threat, generator=_seed())
    assert result.x_adv.shape == x.shape and (result.norms <= threat.eps + 1e-5).all()
    assert result.success.any()


def test_bad_hyperparameters_and_inputs_are_refused(tiny_cnn):
    for kwargs in ({"n_queries": 0}, {"n_restarts": 0}, {"p_init": 0.0}, {"p_init": 1.5}, {"loss": "dlr"}):
        with pytest.raises(InputError):
            Square(**kwargs)
    flat = nn.Sequential(nn.Linear(16, 3)).eval()
    with pytest.raises(InputError, match="B, C, H, W"):
        Square()(flat, torch.rand(2, 16), torch.zeros(2, dtype=torch.long), ThreatModel("linf", 0.1))


def test_cross_entropy_loss_also_fools_the_model(mnist):
    base, x, y = mnist
    x, y = x[:20], y[:20]
    result = Square(n_queries=100, loss="ce")(base, x, y, ThreatModel("linf", 0.3), generator=_seed())
    assert result.success_rate > 0.5
    assert Square(loss="ce").settings()["loss"] == "ce"
