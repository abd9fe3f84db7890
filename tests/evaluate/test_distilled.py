"""With cut gradients and no surrogate, escalation distills one from the model's predictions and transfers from it."""

from __future__ import annotations

import torch

from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.evaluate.context import EvalContext
from bastion.evaluate.distilled import distill_surrogate
from bastion.models import load_zoo_model
from bastion.threat import ThreatModel
from tests.evaluate.test_square_restarts import NoGrad


def _transfer_rows(distill: bool) -> list:
    config = EvalConfig.build(model="no-grad", data="mnist-sample", eps=0.3, steps=5, restarts=1, suite="pgd",
                              curve_points=0, batch_size=64, fgsm=False, blackbox_queries=10,
                              stages={"escalation": {"distill": distill, "square_restarts": 1}})
    result = evaluate_model(NoGrad().eval(), load_dataset("mnist-sample", limit=64), config)
    return [a for a in result.attacks if a.name == "transfer"]


def test_a_distilled_surrogate_breaks_points_the_cut_gradients_hide():
    rows = _transfer_rows(distill=True)
    assert len(rows) == 1 and "distilled" in rows[0].role
    assert rows[0].fooled >= 0.3 * rows[0].attacked
    assert _transfer_rows(distill=False) == []


def test_the_surrogate_learns_the_model_and_is_seeded():
    model = load_zoo_model("mnist-cnn").eval()
    ctx = EvalContext(model, load_dataset("mnist-sample", limit=96), ThreatModel("linf", 0.1), torch.device("cpu"),
                      torch.float32, batch_size=48, stage="escalation")
    first, second = distill_surrogate(ctx, epochs=6), distill_surrogate(ctx, epochs=6)
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    x, _ = load_dataset("mnist-sample", limit=400).batch(torch.arange(200, 400))  # images it never saw
    with torch.no_grad():
        agreement = (first(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert agreement >= 0.4  # from 96 images: far above the 10% of chance
