"""HopSkipJump: label-only (a model whose scores cannot be read), near-minimal norms, a counted budget."""

import pytest
import torch
from torch import nn

from bastion.attacks import HopSkipJump
from bastion.errors import InputError
from bastion.threat import ThreatModel
from tests.conftest import linear_model


class _LabelsOnly(torch.Tensor):
    """Model output whose only readable property is its argmax: every other operation raises."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func not in (torch.Tensor.argmax, torch.argmax):
            raise AssertionError(f"the attack read the model's scores ({getattr(func, '__name__', func)})")
        with torch.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))  # a plain tensor of labels


class LabelOnlyModel(nn.Module):
    """Wraps a model so that its logits can only be argmax'ed; counts its calls."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x).as_subclass(_LabelsOnly)


def _linear_problem(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, generator=g)
    x = 0.4 + 0.2 * torch.rand(n, 1, 8, 8, generator=g)
    bias = -float((x.flatten(1) @ w).mean())
    model = linear_model(w, bias=bias)
    with torch.no_grad():
        y = model(x).argmax(1)
    margin = (x.flatten(1) @ w + bias).abs()
    return model, x, y, {"l2": margin / w.norm(), "linf": margin / w.abs().sum()}


def test_the_guard_refuses_every_read_but_argmax():
    guarded = LabelOnlyModel(linear_model(torch.ones(4)))
    out = guarded(torch.rand(3, 4))
    assert out.argmax(1).shape == (3,) and type(out.argmax(1)) is torch.Tensor
    for read in (lambda t: t.softmax(1), lambda t: t.max(1), lambda t: t[:, 0], lambda t: t + 0, lambda t: t.sum()):
        with pytest.raises(AssertionError, match="scores"):
            read(out)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_never_reads_logits(norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    guarded = LabelOnlyModel(tiny_cnn)
    threat = ThreatModel.unbounded(norm, (1, 8, 8))
    attack = HopSkipJump(n_queries=400, steps=8)
    with torch.no_grad():
        x_adv = attack.perturb(guarded, x, y, threat, generator=torch.Generator().manual_seed(0))
        fooled = tiny_cnn(x_adv).argmax(1) != y
    assert guarded.calls > 10 and fooled.all()


@pytest.mark.parametrize(("norm", "factor"), [("l2", 1.15), ("linf", 1.3)])
def test_near_minimal_norm_on_a_linear_model(norm, factor):
    model, x, y, exact = _linear_problem()
    threat = ThreatModel.unbounded(norm, (1, 8, 8))
    result = HopSkipJump(n_queries=2000)(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert result.success.all()
    ratio = result.norms / exact[norm]
    # Never below the closed-form minimum (it is the minimum), and close to it.
    assert (ratio >= 1 - 1e-4).all() and (ratio <= factor).all(), ratio


def test_query_budget_is_counted_and_kept():
    model, x, y, exact = _linear_problem()
    threat = ThreatModel.unbounded("l2", (1, 8, 8))
    short = HopSkipJump(n_queries=150)(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    long = HopSkipJump(n_queries=1500)(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    # The budget is per image; the final forward pass is Attack.__call__'s own check.
    assert short.passes.forward_samples <= 150 * len(x) + len(x)
    assert long.passes.forward_samples <= 1500 * len(x) + len(x)
    assert long.norms.mean() < short.norms.mean()


def test_refuses_other_norms(tiny_cnn, toy_batch):
    x, y = toy_batch
    with pytest.raises(InputError, match="linf and l2 threat models, not l0"):
        HopSkipJump()(tiny_cnn, x, y, ThreatModel("l0", 2))


def test_images_that_noise_never_fools_start_from_another_image():
    # Noise (mean 0.5) always lands in class 1, so class-1 images need another image as their start.
    model = linear_model(torch.ones(1, 8, 8), bias=-16.0)
    x = torch.cat([torch.full((3, 1, 8, 8), 0.45), torch.full((3, 1, 8, 8), 0.1)])
    y = torch.tensor([1, 1, 1, 0, 0, 0])
    result = HopSkipJump(n_queries=300, init_tries=5)(model, x, y, ThreatModel.unbounded("l2", (1, 8, 8)),
                                                      generator=torch.Generator().manual_seed(0))
    assert result.success.all()
    assert torch.allclose(result.norms[:3], torch.full((3,), 0.2 * 8), rtol=0.1)  # margin 0.2 * 64 / ||w|| = 1.6
