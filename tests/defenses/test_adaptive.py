"""BPDA and EOT as model wrappers: the forward value is the defended model's, the gradient the declared one's."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks import PGD, Transfer
from bastion.defenses import BPDA, EOT, Defended, Ensemble, Median, ResizePad, Round, adaptive_model
from bastion.errors import InputError
from bastion.threat import ThreatModel
from tests.conftest import TinyCNN


def _x(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _grad(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    return grad


def test_bpda_keeps_the_forward_and_uses_the_identity_backward(tiny_cnn):
    defended = Defended([Round(levels=8)], tiny_cnn)
    x = _x()
    torch.testing.assert_close(BPDA(defended)(x), defended(x))
    assert torch.count_nonzero(_grad(defended, x)) == 0  # rounding shatters the gradient
    # Straight-through: the gradient is the undefended model's, taken at the rounded input.
    torch.testing.assert_close(_grad(BPDA(defended), x), _grad(tiny_cnn, Round(levels=8)(x)))
    assert not any(m._forward_hooks for m in defended.modules())  # hooks are removed after the call


def test_bpda_uses_the_declared_approximation(tiny_cnn):
    median = Median(size=3)
    defended = Defended([median], tiny_cnn)
    x = _x()
    x_var = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(tiny_cnn(median(x) + median.approx(x_var) - median.approx(x_var).detach())
                                      .logsumexp(1).sum(), x_var)
    torch.testing.assert_close(_grad(BPDA(defended), x), expected)
    torch.testing.assert_close(_grad(BPDA(defended, identity=True), x), _grad(tiny_cnn, median(x)))


def test_bpda_through_a_voting_ensemble_uses_mean_probabilities():
    torch.manual_seed(0)
    members = [TinyCNN().eval() for _ in range(3)]
    vote = Ensemble(members, "vote")
    x = _x()
    assert torch.count_nonzero(_grad(vote, x)) == 0
    torch.testing.assert_close(BPDA(vote)(x), vote(x))
    x_var = x.clone().requires_grad_(True)
    approx = Ensemble(members, "probs")
    (expected,) = torch.autograd.grad((vote(x) + approx(x_var) - approx(x_var).detach()).logsumexp(1).sum(), x_var)
    torch.testing.assert_close(_grad(BPDA(vote), x), expected)


def test_eot_averages_over_draws(tiny_cnn):
    defended = Defended([ResizePad(seed=0)], tiny_cnn)
    x = _x(3)
    mean = EOT(defended, n_samples=8)(x)
    replay = Defended([ResizePad(seed=0)], tiny_cnn)
    draws = replay(x.repeat(8, 1, 1, 1)).view(8, 3, -1)
    torch.testing.assert_close(mean, draws.mean(0))
    with pytest.raises(InputError):
        EOT(defended, n_samples=0)


def test_adaptive_model_follows_the_declarations(tiny_cnn):
    assert not adaptive_model(tiny_cnn).adapted
    rounded = adaptive_model(Defended([Round()], tiny_cnn))
    assert rounded.bpda == ["round:identity"] and rounded.eot_samples == 0 and isinstance(rounded.module, BPDA)
    random = adaptive_model(Defended([ResizePad(), Median()], tiny_cnn), eot_samples=4)
    assert random.bpda == ["median:gaussian"] and random.eot_samples == 4 and isinstance(random.module, EOT)
    assert adaptive_model(tiny_cnn, random=True).eot_samples == 10


def test_bpda_breaks_what_plain_pgd_cannot(tiny_cnn, toy_batch):
    x, y = toy_batch
    defended = Defended([Round(levels=255)], tiny_cnn)
    threat = ThreatModel("linf", 0.3)
    plain = PGD(steps=10, random_start=False)(defended, x, y, threat)
    adaptive = PGD(steps=10, random_start=False)(BPDA(defended), x, y, threat)
    assert plain.success.sum() == 0  # zero gradients: PGD never moves
    assert adaptive.success.float().mean() > 0.5
    with torch.no_grad():  # the successes hold on the real defended model
        assert torch.equal(defended(adaptive.x_adv).argmax(1) != y, adaptive.success)


def test_transfer_from_a_surrogate(tiny_cnn, toy_batch):
    x, y = toy_batch
    defended = Defended([Round(levels=255)], tiny_cnn)
    threat = ThreatModel("linf", 0.3)
    attack = Transfer(surrogate=tiny_cnn, steps=10, diversity=0.5)
    result = attack(defended, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert result.success.float().mean() > 0.5
    assert result.passes.backward == 0  # the target was never differentiated, only queried
    assert attack.settings()["surrogate"] == "TinyCNN"
    again = attack(defended, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.x_adv, again.x_adv)


def test_transfer_loads_a_surrogate_spec_and_validates():
    assert Transfer(surrogate="zoo:mnist-cnn").settings()["surrogate"] == "zoo:mnist-cnn"
    for bad in ({"diversity": 2.0}, {"steps": 0}, {"decay": -1.0}, {"surrogate": 3}):
        with pytest.raises(InputError):
            Transfer(**bad)
