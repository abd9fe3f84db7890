"""Conformal p-values keep the clean flag rate at the target; drift alarms on PGD traffic, not on clean traffic."""

from __future__ import annotations

import math

import pytest
import torch
from starlette.testclient import TestClient

from bastion.attacks import PGD
from bastion.errors import InputError
from bastion.serve import ConformalScores, DriftMonitor, bonferroni_level, create_app
from bastion.serve.guard import output_signals
from bastion.threat import ThreatModel
from tests.serve.conftest import guard_of, infer_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_p_values_follow_the_formula_and_are_super_uniform() -> None:
    c = ConformalScores.fit("d", torch.tensor([3.0, 1.0, 2.0, 2.0]))
    assert c.p_values(torch.tensor([0.5, 2.0, 2.5, 9.0, float("nan")])).tolist() == [1.0, 0.8, 0.4, 0.2, 0.2]
    generator = torch.Generator().manual_seed(0)
    alpha, flagged, trials = 0.1, 0, 400
    for _ in range(trials):  # exchangeable: calibration and test drawn from one distribution
        scores = torch.randn(50, generator=generator)
        flagged += int((ConformalScores.fit("d", scores[:49]).p_values(scores[49:]) <= alpha).sum())
    # P(p <= 0.1) = floor(0.1 * 50) / 50 = 0.1 exactly; allow 3 binomial standard errors.
    assert flagged / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    with pytest.raises(InputError, match="calibration points"):
        bonferroni_level(0.01, [c])


def test_clean_flag_rate_through_the_api_is_within_the_target(make_server, eval_images) -> None:
    server = make_server()
    x, _ = eval_images
    with TestClient(create_app(server)) as client:
        verdicts = []
        for chunk in torch.split(x, 64):
            verdicts += guard_of(client.post(f"/v2/models/{server.name}/infer", json=infer_body(chunk)).json())
    rate = sum(v["outcome"] != "accept" for v in verdicts) / len(verdicts)
    fpr = server.config.guard.fpr
    assert len(verdicts) == 1000 and rate <= fpr + 2 * math.sqrt(fpr * (1 - fpr) / len(verdicts))
    assert rate > 0  # the guard does flag: a rate of zero would mean it never looks


def stream_signals(model: torch.nn.Module, x: torch.Tensor) -> list[dict[str, float]]:
    with torch.no_grad():
        s = output_signals(model(x))
    return [{"confidence": float(c), "margin": float(m)} for c, m in zip(s["confidence"], s["margin"], strict=True)]


def test_drift_is_silent_on_clean_traffic_and_alarms_within_two_windows_of_pgd(base_server, eval_images) -> None:
    model, x = base_server.guard.model, eval_images[0]
    y = eval_images[1]
    monitor = DriftMonitor(base_server.guard.reference, window=200, run_length=50_000)
    clean = stream_signals(model, x)  # 1,000 held-out images: 5 windows, then 4,000 drawn from them: 20 more
    resampled = torch.randint(len(clean), (4000,), generator=torch.Generator().manual_seed(1)).tolist()
    assert not any(monitor.update(s) for s in clean + [clean[i] for i in resampled])
    assert monitor.state().windows_done == 25 and monitor.state().alarms == 0
    monitor = monitor.fresh()
    # Then 20% of the traffic becomes PGD examples (Linf 0.3), interleaved one in five.
    n_adv = 80
    x_adv = PGD(steps=10)(model, x[:n_adv], y[:n_adv], ThreatModel("linf", 0.3),
                          generator=torch.Generator().manual_seed(0)).x_adv
    adv = stream_signals(model, x_adv)
    mixed = []
    for i in range(2 * 200):
        mixed.append(adv[i // 5] if i % 5 == 4 else clean[i])
    alarms = [monitor.update(s) for s in mixed]
    assert any(alarms), monitor.state()
    assert monitor.state().windows_done == 2
