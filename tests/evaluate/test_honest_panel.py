"""Zero false alarms: every honest zoo model is "reliable" at Linf eps 0.1, 0.2 and 0.3 (the panel tests afford).

The zoo holds a standard CNN, one adversarially trained at eps 0.3 (PGD-AT), and one trained with
Gaussian noise; the benchmark panel adds models trained with `bastion train` (TRADES, MART, FGSM-RS,
L2 PGD-AT). A verdict that flags honest models teaches users to ignore it.
"""

from __future__ import annotations

import pytest

from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.models import load_zoo_model


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-cnn-at", "mnist-cnn-noise"])
def test_an_honest_model_is_reliable(name, eps):
    config = EvalConfig.build(model=f"zoo:{name}", data="mnist-sample", eps=eps, suite="pgd", steps=10, restarts=1,
                              curve_points=3, probe_points=48, blackbox_queries=100)
    result = evaluate_model(load_zoo_model(name), load_dataset("mnist-sample:eval", limit=48), config)
    fired = [f"{f.check}: {f.detail}" for f in result.verdict.fired]
    assert result.verdict.verdict == "reliable" and not fired, fired


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("name", ["mnist-cnn", "mnist-cnn-at", "mnist-cnn-noise"])
def test_an_honest_model_is_reliable_under_the_fast_suite(name, eps):
    # The fast suite's own judges (probes, audit, curve against evidence) stay quiet on honest models too.
    config = EvalConfig.build(model=f"zoo:{name}", data="mnist-sample", eps=eps, suite="fast", curve_points=3,
                              probe_points=32, blackbox_queries=100, aa_steps=10, aa_queries=200)
    result = evaluate_model(load_zoo_model(name), load_dataset("mnist-sample:eval", limit=32), config)
    fired = [f"{f.check}: {f.detail}" for f in result.verdict.fired]
    assert result.verdict.verdict == "reliable" and not fired, fired
    assert {"audit", "curve-evidence"} <= {f.check for f in result.verdict.findings}
