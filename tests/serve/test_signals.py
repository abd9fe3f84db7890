"""Every computed signal enters the decision: detectors, margin and entropy by default, probes when enabled."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binomtest
from starlette.testclient import TestClient

from bastion.attacks import PGD
from bastion.detect import make_detector
from bastion.serve import create_app
from bastion.serve.combined import MinRankCombiner
from bastion.serve.signals import detector_scores
from bastion.threat import ThreatModel
from tests.serve.conftest import guard_of, infer_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_detector_scores_take_one_pass_and_equal_each_detector_alone(base_server, eval_images) -> None:
    x, _ = eval_images
    x, model = x[:64], base_server.guard.model
    cases = [([*base_server.guard.detectors, make_detector("confidence")], [64 * 4]),  # the batch and 3 squeezes
             ([make_detector("margin"), make_detector("entropy")], [64])]
    calls: list[int] = []
    for detectors, passes in cases:
        calls.clear()
        handle = model.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
        try:
            with torch.no_grad():
                logits, scores = detector_scores(model, x, detectors)
        finally:
            handle.remove()
        assert calls == passes and list(scores) == [d.name for d in detectors]
        with torch.no_grad():
            torch.testing.assert_close(logits, model(x))
            for d in detectors:
                torch.testing.assert_close(scores[d.name], d.score(model, x))


def test_probes_enter_the_decision_as_conformal_p_values(make_server, eval_images) -> None:
    server = make_server(guard={"gradient_norm": True, "boundary_steps": 2, "fpr": 0.05})
    names = [c.name for c in server.guard.signals]
    assert names == ["feature-squeezing", "margin", "entropy", "gradient-norm", "boundary-distance"]
    assert server.guard.flag_level == 0.05 and tuple(server.guard.combiner.scores.shape) == (1000, 5)
    x, _ = eval_images
    with TestClient(create_app(server)) as client:
        verdicts = guard_of(client.post(f"/v2/models/{server.name}/infer", json=infer_body(x[:8])).json())
    for v in verdicts:
        assert set(v["p_values"]) == {*names, "combined"}
        assert v["scores"]["boundary-distance"] == -v["boundary_distance"]
        assert v["scores"]["gradient-norm"] == pytest.approx(v["gradient_norm"])


def test_combined_signals_flag_more_robust_model_pgd_than_squeezing_alone(base_server, eval_images) -> None:
    """PGD (Linf 0.3, 20 steps) on zoo:mnist-cnn-at: its successful examples sit at low margin and high
    entropy, which feature squeezing alone misses; the combined p-value flags at least 95% of them."""
    guard = base_server.guard
    x, y = eval_images
    x, y = x[:300], y[:300]
    result = PGD(steps=20)(guard.model, x, y, ThreatModel("linf", 0.3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fooled = result.success & (guard.model(result.x_adv).argmax(1) != y)
    verdicts = guard.run(result.x_adv[fooled]).verdicts
    assert len(verdicts) >= 20
    flagged = sum(bool(v.flagged_by) for v in verdicts) / len(verdicts)
    by_squeeze = sum(v.p_values["feature-squeezing"] <= guard.flag_level for v in verdicts) / len(verdicts)
    assert flagged >= 0.95 and flagged > by_squeeze, (flagged, by_squeeze, len(verdicts))


def brute_force(calibration: torch.Tensor, x: torch.Tensor) -> float:
    """(2) of bastion.serve.combined computed literally: ranks in the augmented set, min over signals."""
    augmented = torch.cat([calibration, x[None]])
    ranks = (augmented[None, :, :] >= augmented[:, None, :]).sum(dim=1)  # (n+1, m): #{z' : s_j(z') >= s_j(z)}
    t = ranks.amin(dim=1)
    return float((t <= t[-1]).sum()) / len(augmented)


def test_min_rank_p_value_matches_its_definition_and_is_valid() -> None:
    generator = torch.Generator().manual_seed(0)
    calibration, new = torch.randn(60, 3, generator=generator), torch.randn(9, 3, generator=generator)
    calibration[:5, 1] = new[0, 1]  # ties
    p = MinRankCombiner(calibration).p_values(new)
    assert torch.allclose(p, torch.tensor([brute_force(calibration, x) for x in new], dtype=torch.float64))
    # Rounded scores: many ties among the calibration points and with the new inputs, and NaN (most suspicious).
    for m in (1, 2, 4):
        calibration = (torch.randn(40, m, generator=generator) * 2).round()
        new = (torch.randn(30, m, generator=generator) * 2).round()
        new[0, 0] = float("nan")
        each, p = MinRankCombiner(calibration).all_p_values(new)
        filled = torch.where(torch.isnan(new), torch.full_like(new, float("inf")), new)
        assert torch.allclose(p, torch.tensor([brute_force(calibration, x) for x in filled], dtype=torch.float64))
        assert torch.allclose(each, (1.0 + (calibration[None] >= filled[:, None]).sum(dim=1).double()) / 41.0)
    # Exchangeable, strongly dependent signals: the flag rate at 0.05 stays at most 0.05 (binomial test).
    flags, total = 0, 0
    for _ in range(200):
        z = torch.randn(149, 3, generator=generator)
        z[:, 1] = z[:, 0] + 0.1 * z[:, 1]
        flags += int((MinRankCombiner(z[:99]).p_values(z[99:]) <= 0.05).sum())
        total += 50
    assert binomtest(flags, total, 0.05, alternative="greater").pvalue > 0.01, flags / total


def test_signal_level_matches_the_combined_flag(base_server, eval_images) -> None:
    """Flagging each signal at the equivalent level agrees with the combined p-value on nearly every input."""
    guard = base_server.guard
    level = guard.combiner.signal_level(guard.flag_level)
    # The three signals share the rate, but less thinly than Bonferroni's fpr / 3: they are dependent.
    assert guard.flag_level / 3 < level < guard.flag_level
    x, _ = eval_images
    verdicts = guard.run(x[:500]).verdicts
    combined = [v.p_values["combined"] <= guard.flag_level for v in verdicts]
    per_signal = [min(p for k, p in v.p_values.items() if k != "combined") <= level for v in verdicts]
    assert sum(a != b for a, b in zip(combined, per_signal, strict=True)) <= 5
