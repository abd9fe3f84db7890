"""PGD and FGSM against closed-form optima on linear models, and the restart and early-stop guarantees."""

import pytest
import torch

from bastion.attacks import FGSM, PGD
from bastion.threat import ThreatModel
from tests.conftest import linear_model

D = 36


def _linear_case(seed=0, n=200):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, generator=g)
    model = linear_model(w, bias=0.0)
    # Interior points (so the box never binds for eps <= 0.1), labelled by the model.
    x = 0.3 + 0.4 * torch.rand(n, 1, 6, 6, generator=g)
    margin = x.flatten(1) @ w  # logit_1 - logit_0
    y = (margin > 0).long()
    return model, w, x, y, margin.abs()


def _margin(model, x, y):
    with torch.no_grad():
        logits = model(x)
    return (logits.gather(1, y[:, None]) - logits.gather(1, (1 - y)[:, None])).squeeze(1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_reaches_the_analytic_worst_case_on_a_linear_model(norm):
    model, w, x, y, margin = _linear_case()
    eps = 0.05 if norm == "linf" else 0.5
    dual = w.abs().sum() if norm == "linf" else w.norm()  # dual norm of w
    worst = margin - eps * dual  # smallest margin reachable in the ball
    clear = (worst.abs() > 1e-3 * dual)
    attack = PGD(steps=50) if norm == "linf" else PGD(steps=50, rel_step=0.2)  # L2 turns slowly at 2.5/steps
    result = attack(model, x, y, ThreatModel(norm, eps), generator=torch.Generator().manual_seed(0))
    # Exactly the points whose worst case crosses the boundary are fooled.
    assert torch.equal(result.success[clear], (worst < 0)[clear])
    # On the robust points PGD's best iterate reaches the analytic minimum margin.
    robust = ~result.success
    achieved = _margin(model, result.x_adv[robust], y[robust])
    assert torch.allclose(achieved, worst[robust], rtol=0, atol=2e-3 * float(dual))


def test_fgsm_is_exact_for_linf_on_a_linear_model():
    model, w, x, y, margin = _linear_case(seed=1)
    eps = 0.05
    result = FGSM()(model, x, y, ThreatModel("linf", eps))
    expected = x - eps * torch.sign(w).view(1, 1, 6, 6) * torch.where(y == 1, 1.0, -1.0).view(-1, 1, 1, 1)
    assert torch.allclose(result.x_adv, expected, atol=1e-6)
    assert torch.equal(result.success, margin - eps * w.abs().sum() < 0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_weaken_the_result(norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel(norm, 0.06 if norm == "linf" else 0.3)
    single = PGD(steps=5, n_restarts=1)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    many = PGD(steps=5, n_restarts=6)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert (many.success | ~single.success).all(), "a point fooled by one restart must stay fooled"
    assert many.success.sum() >= single.success.sum()


def test_restarts_only_rerun_robust_points(tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel("linf", 0.5)  # large: most points fall in the first restart
    one = PGD(steps=5, n_restarts=1)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    three = PGD(steps=5, n_restarts=3)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    extra = three.passes.backward_samples - one.passes.backward_samples
    assert extra <= 2 * 5 * int((~one.success).sum())


def test_early_stop_saves_passes_without_changing_success(tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel("linf", 0.08)
    fast = PGD(steps=10, early_stop=True)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    full = PGD(steps=10, early_stop=False)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fast.success, full.success)
    assert fast.passes.backward_samples <= full.passes.backward_samples


def test_pass_counts_without_early_stop(tiny_cnn, toy_batch):
    x, y = toy_batch
    result = PGD(steps=10, early_stop=False)(tiny_cnn, x, y, ThreatModel("linf", 0.01))
    # 11 iterates checked (start + 10 steps), 10 gradients, 1 final check by Attack.__call__.
    assert (result.passes.forward, result.passes.backward) == (12, 10)
    assert result.passes.backward_samples == 10 * len(x)


def test_step_size_follows_madrys_rule_by_default():
    assert PGD(steps=40).step_size_fraction == pytest.approx(2.5 / 40)
    assert PGD(steps=40, rel_step=0.1).step_size_fraction == 0.1


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_losses_break_a_linear_model_equally(loss):
    model, w, x, y, margin = _linear_case(seed=2)
    threat = ThreatModel("linf", 0.05)
    result = PGD(steps=30, loss=loss)(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    worst = margin - 0.05 * w.abs().sum()
    clear = worst.abs() > 1e-3
    assert torch.equal(result.success[clear], (worst < 0)[clear])


def test_bad_hyperparameters_are_refused():
    from bastion.errors import InputError

    for kwargs in ({"steps": 0}, {"n_restarts": 0}, {"rel_step": -1.0}, {"loss": "hinge"}):
        with pytest.raises(InputError):
            PGD(**kwargs)
