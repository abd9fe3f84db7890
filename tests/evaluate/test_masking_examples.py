"""The gradient-masking checks on the teaching examples of gradient masking, and the --adaptive switch."""

from __future__ import annotations

import pytest
import torch

from bastion.data import load_dataset
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.models import load_zoo_model
from tests.evaluate.comparable import comparable


def _config(**options):
    settings = {"model": "zoo:mnist-cnn", "data": "mnist-sample", "eps": 0.3, "steps": 10, "restarts": 1,
                "suite": "pgd", "curve_points": 0, "batch_size": 64, "blackbox_queries": 40, **options}
    return EvalConfig.build(**settings)


def test_adaptive_flag_escalates_without_a_finding():
    small = load_dataset("mnist-sample", limit=16)
    result = evaluate_model(load_zoo_model("mnist-cnn-at"), small, _config(adaptive=True))
    assert result.verdict.escalated
    assert any(a.role.startswith("escalation") for a in result.attacks)


def _tiny_eval(defense: str, **options):
    small = load_dataset("mnist-sample", limit=16)
    return evaluate_model(load_zoo_model("mnist-cnn"), small, _config(defense=(defense,), **options))


def test_saturated_probabilities_are_flagged_and_attacked_through():
    result = _tiny_eval("saturate:scale=20")
    fired = {f.check for f in result.verdict.fired}
    assert "probabilities" in fired and result.verdict.escalated
    assert result.summary.robust_accuracy <= 0.1


def test_quantized_outputs_shatter_gradients():
    result = _tiny_eval("quantize-output:decimals=1")
    assert "zero-gradients" in {f.check for f in result.verdict.fired}
    assert result.verdict.adaptive["bpda"] == ["quantize-output:identity"]
    assert result.summary.robust_accuracy <= 0.1


def test_randomized_defense_is_seen_and_attacked_with_eot():
    result = _tiny_eval("resize-pad:scale=1.15", eot_samples=4)
    assert "randomness" in {f.check for f in result.verdict.fired}
    assert result.verdict.adaptive["eot_samples"] == 4
    assert result.summary.robust_accuracy <= 0.2


def test_checks_on_a_model_returning_probabilities_in_memory():
    class Softmaxed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = load_zoo_model("mnist-cnn")

        def forward(self, x):
            return self.inner(x).softmax(1)

    small = load_dataset("mnist-sample", limit=16)
    result = evaluate_model(Softmaxed(), small, _config())
    assert "probabilities" in {f.check for f in result.verdict.fired}


def test_an_interrupted_escalated_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    import bastion.evaluate.stages.curve as curve_module

    small = load_dataset("mnist-sample", limit=12)
    config = _config(defense=("round",), curve_points=3)
    uninterrupted = evaluate_model(load_zoo_model("mnist-cnn"), small, config)
    real_curve = curve_module.curve_points
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(kwargs.get("model"))
        raise KeyboardInterrupt

    monkeypatch.setattr(curve_module, "curve_points", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(load_zoo_model("mnist-cnn"), small, config, state_dir=tmp_path)
    assert calls and calls[0] is not None  # the curve runs after the escalation, on the adaptive view
    monkeypatch.setattr(curve_module, "curve_points", real_curve)
    resumed = evaluate_model(load_zoo_model("mnist-cnn"), small, config, resume=True, state_dir=tmp_path)
    assert comparable(resumed) == comparable(uninterrupted)
    assert resumed.verdict.escalated and not (tmp_path / "state.pt").exists()


def test_a_surrogate_gives_the_transfer_check():
    result = _tiny_eval("round", surrogate="zoo:mnist-cnn-at")
    checks = {f.check: f for f in result.verdict.findings}
    assert checks["transfer-stronger"].fired and "transfer alone" in checks["transfer-stronger"].detail
    assert result.verdict.adaptive["surrogate"] == "zoo:mnist-cnn-at"
