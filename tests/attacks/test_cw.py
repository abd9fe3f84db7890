"""C&W L2 against the closed-form minimal perturbation of a linear model, and on the zoo MNIST CNN."""

import pytest
import torch

from bastion.attacks import CW
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models import load_zoo_model
from bastion.threat import ThreatModel
from tests.conftest import linear_model

D = 36


def _logit_margin(model, x, labels, targeted=False):
    """z_y - max_{i != y} z_i (untargeted: negative when fooled), or z_t - max_{i != t} z_i (targeted)."""
    with torch.no_grad():
        logits = model(x)
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
    return own - others


@pytest.fixture(scope="module")
def mnist():
    model = load_zoo_model("mnist-cnn")
    x, y = load_dataset("mnist-sample:eval", limit=30).batch(slice(None))
    return model, x, y, ThreatModel.unbounded("l2", tuple(x.shape[1:]))


# A small budget that still breaks every one of the 30 points (the default budget is 9 x 1000 steps).
MNIST_BUDGET = {"binary_search_steps": 3, "steps": 50, "lr": 0.2, "initial_const": 1.0}


def test_cw_finds_the_minimal_l2_perturbation_of_a_linear_model():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(D, generator=g)
    model = linear_model(w, bias=float(-0.5 * w.sum()))  # boundary through the box's centre
    x = 0.3 + 0.4 * torch.rand(40, 1, 6, 6, generator=g)
    margin = (x - 0.5).flatten(1) @ w  # logit_1 - logit_0
    # Adam's steps set an absolute resolution of about 1e-3, so the distances are kept above 0.05.
    far = margin.abs() / w.norm() > 0.05
    x, margin = x[far][:20], margin[far][:20]
    y = (margin > 0).long()
    minimal = margin.abs() / w.norm()
    closest = x.flatten(1) - (margin / w.norm() ** 2)[:, None] * w
    assert closest.min() > 0 and closest.max() < 1, "the box must not bind in this test"
    result = CW(steps=100)(model, x, y, ThreatModel.unbounded("l2", (1, 6, 6)))
    assert result.success.all()
    assert (result.norms >= minimal * (1 - 1e-4)).all(), "no perturbation can be shorter than the minimum"
    assert (result.norms <= minimal * 1.05).all()


def test_cw_breaks_every_mnist_point_with_a_small_l2_norm(mnist):
    model, x, y, threat = mnist
    result = CW(**MNIST_BUDGET)(model, x, y, threat)
    median = float(result.norms.median())
    print(f"C&W L2 on 30 mnist-sample:eval points, budget {MNIST_BUDGET}: median L2 {median:.3f}")
    assert result.success.all()
    assert 0.5 < median < 2.0
    assert (_logit_margin(model, result.x_adv, y) < 0).all()


def test_kappa_gives_examples_with_at_least_that_margin(mnist):
    model, x, y, threat = mnist
    x, y, kappa = x[:10], y[:10], 2.0
    plain = CW(**MNIST_BUDGET)(model, x, y, threat)
    confident = CW(**MNIST_BUDGET, kappa=kappa)(model, x, y, threat)
    assert confident.success.all()
    assert (-_logit_margin(model, confident.x_adv, y) >= kappa - 1e-4).all()
    assert float(confident.norms.median()) > float(plain.norms.median())


def test_targeted_success_means_the_target_is_predicted(tiny_cnn, toy_batch):
    x, y = toy_batch
    target = (y + 1) % 4
    attack = CW(binary_search_steps=4, steps=50, lr=0.1, initial_const=1.0)
    result = attack(tiny_cnn, x, y, ThreatModel.unbounded("l2", (1, 8, 8)), target=target)
    assert result.success.all()
    assert torch.equal(result.predictions, target)
    assert (_logit_margin(tiny_cnn, result.x_adv, target) > 0).all()


def test_more_binary_search_steps_never_lose_a_point_nor_lengthen_a_perturbation(tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel.unbounded("l2", (1, 8, 8))
    one = CW(binary_search_steps=1, steps=30, initial_const=0.1)(tiny_cnn, x, y, threat)
    four = CW(binary_search_steps=4, steps=30, initial_const=0.1)(tiny_cnn, x, y, threat)
    assert (four.success | ~one.success).all()
    assert (four.norms[one.success] <= one.norms[one.success]).all()
    assert four.success.sum() > one.success.sum(), "c grows on failed points, so more of them fall"


def test_points_never_fooled_are_returned_unchanged(tiny_cnn, toy_batch):
    x, y = toy_batch
    result = CW(binary_search_steps=1, steps=3, initial_const=1e-6)(tiny_cnn, x, y, ThreatModel("l2", 10.0))
    assert not result.success.any()
    assert torch.equal(result.x_adv, x)


def test_same_inputs_same_result(tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel.unbounded("l2", (1, 8, 8))
    a = CW(binary_search_steps=2, steps=30)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    b = CW(binary_search_steps=2, steps=30)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.x_adv, b.x_adv), "C&W draws no randomness: the generator must not matter"


def test_bad_hyperparameters_are_refused():
    for kwargs in (
        {"steps": 0},
        {"binary_search_steps": 0},
        {"lr": 0.0},
        {"initial_const": -1.0},
        {"kappa": -0.5},
        {"kappa": float("nan")},
    ):
        with pytest.raises(InputError):
            CW(**kwargs)
