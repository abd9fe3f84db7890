"""The smoothing fallback runs only on the inputs the policy sends to it, and decides sequentially."""

from __future__ import annotations

import pytest
import torch
from starlette.testclient import TestClient

from bastion.serve import create_app
from tests.serve.conftest import guard_of, infer_body

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_only_flagged_inputs_are_smoothed(make_server, eval_images) -> None:
    server = make_server(guard={"on_flag": "fallback", "fallback": "smooth", "smoothing_n": 200})
    x, _ = eval_images
    batch = torch.cat([x[:15], torch.full((1, 1, 28, 28), 0.5)])  # a grey square: flagged (see test_app)
    with TestClient(create_app(server)) as client:
        verdicts = guard_of(client.post(f"/v2/models/{server.name}/infer", json=infer_body(batch)).json())
    accepted = [v for v in verdicts if v["outcome"] == "accept"]
    fallen = [v for v in verdicts if v["outcome"] == "fallback"]
    assert len(accepted) >= 12 and verdicts[-1] in fallen
    assert all(v["smoothed_label"] is None and v["smoothing_samples"] is None for v in accepted)
    assert all(v["smoothing_samples"] is not None and v["label"] == v["smoothed_label"] for v in fallen)


def test_clear_inputs_stop_early_and_answers_do_not_reroll(make_server, eval_images) -> None:
    # The guarantee broken with on_drift=fallback sends every input to the smoothed fallback.
    server = make_server(guard={"on_drift": "fallback", "fallback": "smooth", "smoothing_n": 2_000,
                                "smoothing_n0": 16, "smoothing_sigma": 0.25})
    x, y = eval_images
    first = server.guard.run(x[:8], drifted=True).verdicts
    again = server.guard.run(x[:8], drifted=True).verdicts
    assert all(v.outcome == "fallback" and "no longer holds" in v.reason for v in first)
    assert [v.smoothed_label for v in first] == [v.smoothed_label for v in again]  # noise seeded by the input
    answered = [v for v in first if v.smoothed_label != -1]
    assert sum(v.smoothed_label == int(t) for v, t in zip(first, y[:8], strict=True)) >= 6
    # The test stops as soon as it decides: most digits within the first rounds (16 selection + 32 or 64
    # samples), every one well below the budget of 2,000 that a fixed-n PREDICT would spend on each.
    samples = sorted(v.smoothing_samples for v in first)
    assert answered and samples[len(samples) // 2] <= 16 + 64 and samples[-1] < 16 + 2_000, samples
    undrifted = server.guard.run(x[:8]).verdicts
    assert all(v.smoothing_samples is None for v in undrifted if v.outcome == "accept")
