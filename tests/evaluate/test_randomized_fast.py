"""On a model that adds Gaussian noise at inference, the fast suite attacks an EOT view and finds what PGD misses.

Issue 13's bar: the default evaluation of a randomized model applies EOT and reports at most 2%,
where plain PGD, whose gradients are single noisy draws, reports far more.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.models import load_zoo_model


class Noisy(nn.Module):
    """The zoo's noise-trained CNN with x + 0.5 * N(0, I) inside its forward: another draw at every call."""

    def __init__(self) -> None:
        super().__init__()
        self.model = load_zoo_model("mnist-cnn-noise")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x + 0.5 * torch.randn_like(x))


def test_the_fast_suite_attacks_a_randomized_model_through_eot_and_reports_far_less_than_pgd():
    data = load_dataset("mnist-sample:eval", limit=64)
    torch.manual_seed(0)
    plain = evaluate_model(Noisy().eval(), data, EvalConfig.build(model="noisy", data="mnist-sample:eval", eps=0.3,
                                                                  suite="pgd", curve_points=0, adaptive=False))
    fast = evaluate_model(Noisy().eval(), data, EvalConfig.build(model="noisy", data="mnist-sample:eval", eps=0.3,
                                                                 suite="fast", curve_points=0))
    pgd = next(a for a in plain.attacks if a.name == "pgd")
    main_attack = next(a for a in fast.attacks if a.name == "apgd-fast")
    assert "EOT x" in main_attack.role
    assert fast.verdict.robust_accuracy <= 0.04 and pgd.robust_accuracy >= 2 * max(fast.verdict.robust_accuracy,
                                                                                    0.03)
    assert fast.verdict.verdict != "reliable"
