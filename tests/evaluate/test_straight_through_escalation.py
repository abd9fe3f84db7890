"""Escalation finds non-differentiable operations hidden inside a model's forward and attacks them straight-through.

Before, with no declared defense to offer BPDA, escalation re-ran PGD with plain gradients, which
broke no point; only the gradient-free Square attack got through.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from bastion.cli import main
from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, EvalResult, evaluate_model
from bastion.evaluate.stages.escalation import view_text
from bastion.models import load_zoo_model


class Hidden(nn.Module):
    """The zoo MNIST CNN behind 8-bit rounding or a detached input, inside its own forward."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.model, self.kind = load_zoo_model("mnist-cnn"), kind

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.round(x * 255) / 255 if self.kind == "round" else x.detach() + 0 * x)


def hidden_round() -> nn.Module:
    """A factory for model specs (`tests.evaluate.test_straight_through_escalation:hidden_round`)."""
    return Hidden("round").eval()


@pytest.mark.parametrize("kind", ["round", "detach"])
def test_escalation_attacks_hidden_operations_straight_through(kind):
    config = EvalConfig.build(model=f"hidden-{kind}", data="mnist-sample", eps=0.3, steps=10, restarts=1, suite="pgd",
                              curve_points=3, batch_size=64)
    result = evaluate_model(Hidden(kind), load_dataset("mnist-sample", limit=48), config)
    verdict = result.verdict
    assert verdict.flattering_accuracy >= 0.9 and "zero-gradients" in {f.check for f in verdict.fired}
    assert verdict.adaptive["straight_through"] == [kind] and verdict.adaptive["bpda"] == []
    through = [a for a in result.attacks if a.role.startswith(f"escalation: straight-through {kind}")]
    # The gradient attacks get through by themselves: the first one breaks most points, the gradient-free
    # attack is not needed.
    assert through and through[0].fooled >= 0.5 * through[0].attacked
    assert verdict.robust_accuracy <= 0.05 and not any(a.role.startswith("escalation: gradient-free")
                                                       for a in result.attacks)
    assert EvalResult.from_dict(result.to_dict()) == result


def test_attack_command_with_adaptive_goes_straight_through(capsys):
    args = ["attack", "pgd", "--model", "tests.evaluate.test_straight_through_escalation:hidden_round", "--data",
            "mnist-sample", "--limit", "8", "--eps", "0.3", "--steps", "5", "--quiet"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--adaptive"]) == 0
    adaptive = json.loads(capsys.readouterr().out)
    assert plain["robust_accuracy"] > 0.8 and adaptive["robust_accuracy"] < 0.2


def test_view_text_names_the_straight_through_operations():
    assert view_text({"bpda": [], "eot_samples": 0, "straight_through": ["round", "detach"]}) == \
        "straight-through round detach"
    assert view_text({"bpda": ["jpeg:identity"], "eot_samples": 4, "straight_through": ["detach"]}) == \
        "BPDA jpeg:identity, straight-through detach, EOT x4"
    assert view_text({"bpda": [], "eot_samples": 0}) == ""  # reports written before the key existed


def test_after_the_fast_suite_attacked_the_view_escalation_adds_no_gradient_attack_through_it():
    config = EvalConfig.build(model="hidden-round", data="mnist-sample", eps=0.1, suite="fast", curve_points=3,
                              batch_size=64, aa_steps=5, aa_queries=50)  # eps 0.1: some points stay robust
    result = evaluate_model(Hidden("round"), load_dataset("mnist-sample", limit=32), config)
    main_attack = next(a for a in result.attacks if a.name == "apgd-fast")
    assert "straight-through round" in main_attack.role and 0 < main_attack.fooled < main_attack.attacked
    escalation = [a for a in result.attacks if a.role.startswith("escalation")]
    assert escalation and all(a.name in ("square", "transfer") for a in escalation)
