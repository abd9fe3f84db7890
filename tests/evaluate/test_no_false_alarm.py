"""An honest model evaluated below the eps it was trained at holds beyond that eps: no alarm, no escalation."""

from __future__ import annotations

from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.models import load_zoo_model


def test_an_adversarially_trained_model_at_a_smaller_eps_is_reliable():
    # zoo:mnist-cnn-at is trained at eps 0.3; at 0.1 its curve falls only a few points by 0.2.
    config = EvalConfig.build(model="zoo:mnist-cnn-at", data="mnist-sample", eps=0.1, suite="pgd", steps=10, restarts=1,
                              curve_points=3)
    result = evaluate_model(load_zoo_model("mnist-cnn-at"), load_dataset("mnist-sample", limit=50), config)
    curve = {round(p.eps, 3): p.accuracy for p in result.curve}
    assert curve[0.2] < curve[0.1]  # it does fall ...
    assert curve[0.2] >= 0.7 * curve[0.1]  # ... slowly: what a plateau rule would call masking
    assert result.verdict.verdict == "reliable" and not result.verdict.escalated
    assert not [f.check for f in result.verdict.fired]
