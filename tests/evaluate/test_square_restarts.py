"""Escalation runs Square again while it keeps finding points, on a model no gradient can open."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.models import load_zoo_model


class NoGrad(nn.Module):
    """The zoo MNIST CNN run without autograd: a zero input gradient, and nothing to go straight through."""

    def __init__(self) -> None:
        super().__init__()
        self.model = load_zoo_model("mnist-cnn")

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = self.model(x)
        return out + 0 * x.flatten(1).sum(1, keepdim=True)


def test_square_restarts_while_it_keeps_breaking_points():
    config = EvalConfig.build(model="no-grad", data="mnist-sample", eps=0.3, steps=3, restarts=1, suite="pgd",
                              curve_points=0, batch_size=32, blackbox_queries=6, aa_queries=40, fgsm=False,
                              stages={"escalation": {"square_restarts": 4}})
    result = evaluate_model(NoGrad().eval(), load_dataset("mnist-sample", limit=32), config)
    square = [a for a in result.attacks if a.role.startswith("escalation: gradient-free")]
    assert len(square) >= 2  # the first run broke points, so it ran again
    # Gradients are cut: the first run has AutoAttack's budget (--aa-queries), the restarts the checks' (5 x 6).
    assert [a.settings["n_queries"] for a in square] == [40] + [30] * (len(square) - 1)
    assert all(earlier.fooled > 0 for earlier in square[:-1])  # a restart only follows a run that found points
    assert square[-1].fooled == 0 or len(square) == 4 or square[-1].robust_accuracy == 0
    assert [a.role.endswith(f"restart {i}") for i, a in enumerate(square) if i] == [True] * (len(square) - 1)
