"""Straight-through gradients for non-differentiable operations hidden inside a model's own forward.

The view keeps the model's logits bit for bit, gives the hidden operations the gradient of the
identity (BPDA, Athalye et al. 2018, arXiv:1802.00420, 4.1), names what it found, and leaves honest
models alone.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from bastion.attacks import PGD
from bastion.data import load_dataset
from bastion.defenses import BPDA, Defended, Median, Round, StraightThrough, adaptive_model, straight_through_ops
from bastion.models import load_model
from bastion.threat import ThreatModel

#: Hidden non-differentiable operations, by the name the view reports them under.
HIDDEN: dict[str, tuple[str, Callable[[Tensor], Tensor]]] = {
    "torch.round": ("round", lambda x: torch.round(x * 8) / 8),
    "Tensor.floor": ("floor", lambda x: (x * 8).floor() / 8),
    "Tensor.round_": ("round", lambda x: (x * 8).round_() / 8),
    "torch.sign": ("sign", lambda x: torch.sign(x - 0.5)),
    "detach": ("detach", lambda x: x.detach() + 0 * x),
    "Tensor.data": ("detach", lambda x: x.data * 1.0),
    "uint8 cast": ("integer cast", lambda x: (x * 255).to(torch.uint8).float() / 255),
    "long cast": ("integer cast", lambda x: (x * 255).long().clamp(0, 255) / 255),
    "floor division": ("floor-divide", lambda x: (x * 255) // 16 * 16 / 255),
    "fake quantization": ("fake-quantize", lambda x: torch.fake_quantize_per_tensor_affine(x, 0.1, 0, 0, 255)),
}


class Hidden(nn.Module):
    """`model(fn(x))`: a non-differentiable step inside forward, not declared as a `Defense`."""

    def __init__(self, model: nn.Module, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.fn(x))


def _x(n: int = 6) -> Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _grad(model: nn.Module, x: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


@pytest.mark.parametrize("case", sorted(HIDDEN))
def test_the_view_keeps_the_logits_and_finds_the_operation(case, tiny_cnn):
    name, fn = HIDDEN[case]
    model, x = Hidden(tiny_cnn, fn), _x()
    with torch.no_grad():
        assert torch.equal(StraightThrough(model)(x), model(x))  # bit-identical, not merely close
    x_var = x.clone().requires_grad_(True)
    assert torch.equal(StraightThrough(model)(x_var).detach(), model(x_var).detach())
    assert straight_through_ops(model, x) == [name]
    assert torch.count_nonzero(_grad(StraightThrough(model), x)) > 0


@pytest.mark.parametrize("case", ["torch.round", "Tensor.round_", "detach", "Tensor.data"])
def test_the_gradient_is_the_model_without_the_operation(case, tiny_cnn):
    _, fn = HIDDEN[case]
    model, x = Hidden(tiny_cnn, fn), _x()
    assert torch.count_nonzero(_grad(model, x)) == 0  # shattered: plain gradients are zero (or absent)
    # The identity in the backward pass: the gradient of the model without the step, at the step's output.
    torch.testing.assert_close(_grad(StraightThrough(model), x), _grad(tiny_cnn, fn(x)))


def test_a_linear_model_gets_its_own_weights_as_the_gradient():
    layer = nn.Linear(4, 1)
    x = torch.rand(3, 4)
    grad = _grad(StraightThrough(Hidden(layer, lambda v: torch.round(v * 4) / 4)), x)
    torch.testing.assert_close(grad, layer.weight.detach().expand(3, 4))


def test_several_operations_are_listed_in_order(tiny_cnn):
    model = Hidden(tiny_cnn, lambda x: torch.round(x * 8).detach() / 8 + torch.sign(x) * 0)
    assert straight_through_ops(model, _x()) == ["round", "detach", "sign"]


def _integer_tricks(x: Tensor) -> Tensor:
    """A quantizer that clamps its integer codes in place, looks them up in a table and reuses the float."""
    scaled = x * 255
    codes = scaled.long()
    codes.clamp_(0, 127)
    table = torch.linspace(0, 1, 256)
    return table[codes] * 0.5 + codes.float() / 510 + scaled / 2550


def test_integer_tricks_keep_the_value_and_the_float_they_came_from(tiny_cnn):
    model, x = Hidden(tiny_cnn, _integer_tricks), _x()
    x_var = x.clone().requires_grad_(True)
    # The in-place clamp is not replayed on the float source, which the model uses again afterwards.
    assert torch.equal(StraightThrough(model)(x_var).detach(), model(x))
    assert straight_through_ops(model, x) == ["integer cast"]
    assert torch.count_nonzero(_grad(StraightThrough(model), x)) > 0


def test_constants_and_honest_models_are_left_alone(tiny_cnn):
    scale = torch.tensor(7.6)  # the model's own constant computation: no gradient flows into it
    model = Hidden(tiny_cnn, lambda x: x * torch.round(scale).detach() / 8)
    x = _x()
    assert straight_through_ops(model, x) == []
    view = adaptive_model(tiny_cnn, probe=x)
    assert not view.adapted and view.module is tiny_cnn and view.describe()["straight_through"] == []
    data = load_dataset("mnist-sample", limit=4)
    images, _ = data.batch(torch.arange(4), device=torch.device("cpu"), dtype=torch.float32)
    for name in ("zoo:mnist-cnn", "zoo:mnist-cnn-at", "zoo:mnist-cnn-noise"):
        zoo = load_model(name).module
        assert straight_through_ops(zoo, images) == [], name
        assert not adaptive_model(zoo, probe=images).adapted, name


def test_adaptive_model_combines_it_with_declared_defenses(tiny_cnn):
    x = _x()
    for defense in (Round(levels=8), Median(size=3)):
        model = Defended([defense], Hidden(tiny_cnn, HIDDEN["detach"][1]))
        view = adaptive_model(model, probe=x)
        # The declared defense keeps its declared approximation; only the hidden detach is straight-through.
        assert view.adapted and view.straight_through == ["detach"] and view.bpda == [f"{defense.name}:{defense.bpda}"]
        assert view.describe()["straight_through"] == ["detach"]
        assert torch.equal(view.module(x), model(x))
        torch.testing.assert_close(_grad(view.module, x), _grad(BPDA(Defended([defense], tiny_cnn)), x))
    assert adaptive_model(Defended([Round()], tiny_cnn), probe=x).straight_through == []
    assert adaptive_model(Hidden(tiny_cnn, HIDDEN["detach"][1])).straight_through == []  # no probe: no search


@pytest.mark.parametrize("case", ["torch.round", "detach"])
def test_pgd_through_the_adaptive_view_breaks_what_plain_pgd_cannot(case):
    """On the zoo MNIST CNN with 8-bit rounding (or a detached input) inside forward, at eps=0.15.

    Measured (64 points, 10 steps): plain PGD leaves 98% robust on both; through the view, 14%
    (rounding) and 11% (detach), about the undefended model's figure.
    """
    fn = (lambda x: torch.round(x * 255) / 255) if case == "torch.round" else HIDDEN["detach"][1]
    model = Hidden(load_model("zoo:mnist-cnn").module, fn).eval()
    x, y = load_dataset("mnist-sample", limit=64).batch(torch.arange(64), device=torch.device("cpu"),
                                                        dtype=torch.float32)
    threat, attack = ThreatModel("linf", 0.15), PGD(steps=10)
    view = adaptive_model(model, probe=x[:8])
    assert view.straight_through == [HIDDEN[case][0]]
    plain = attack(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    adaptive = attack(view.module, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert plain.success.float().mean() <= 0.05  # the shattered gradient stops plain PGD
    assert adaptive.success.float().mean() >= 0.7
    with torch.no_grad():  # the successes hold on the real model
        assert torch.equal(model(adaptive.x_adv).argmax(1) != y, adaptive.success)
