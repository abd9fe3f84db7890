"""Properties every registered attack must have, in both norms (registering an attack is enough to test it)."""

import pytest
import torch

from bastion.attacks import ATTACKS
from bastion.errors import InputError
from bastion.threat import ThreatModel

EPS = {"linf": 0.1, "l2": 0.5, "l0": 2}
CASES = [(name, norm) for name in ATTACKS.names() for norm in getattr(ATTACKS.get(name), "norms", ("linf", "l2"))]


def _first_norm(name):
    """The norm the single-norm checks use: linf where the attack supports it, else its first one."""
    norms = getattr(ATTACKS.get(name), "norms", ("linf", "l2"))
    return "linf" if "linf" in norms else norms[0]


# Smaller budgets keep the contract fast; the properties do not depend on the budget.
FAST = {
    "apgd-ce": {"steps": 20},
    "apgd-dlr": {"steps": 20},
    "apgd-t": {"steps": 20, "n_targets": 2},
    "apgd-fast": {"steps": 20, "target_steps": 20, "n_targets": 2},
    "fab": {"steps": 20},
    "fab-t": {"steps": 20, "n_targets": 2},
    "square": {"n_queries": 300},
    "cw": {"steps": 100, "binary_search_steps": 4, "initial_const": 0.1},
    "autoattack": {"steps": 10, "n_queries": 100},
    "onepixel": {"population": 20, "steps": 10},
    "hopskipjump": {"n_queries": 300, "steps": 10},
}


def _attack(name):
    return ATTACKS.create(name, **FAST.get(name, {}))


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_adversarial_examples_stay_in_ball_and_box(name, norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel(norm, EPS[norm])
    result = _attack(name)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert (result.norms <= threat.eps + 1e-6).all()
    assert (threat.norm.measure(result.x_adv - x) <= threat.eps + 1e-6).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype and result.x_adv.device == x.device


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_inputs_are_left_unchanged(name, norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    x_copy, y_copy = x.clone(), y.clone()
    params = [p.clone() for p in tiny_cnn.parameters()]
    _attack(name)(tiny_cnn, x, y, ThreatModel(norm, EPS[norm]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert all(torch.equal(a, b) for a, b in zip(params, tiny_cnn.parameters(), strict=True))
    assert all(p.requires_grad for p in tiny_cnn.parameters())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_same_seed_same_result(name, norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel(norm, EPS[norm])
    a = _attack(name)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(5))
    b = _attack(name)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_success_means_misclassified(name, norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    result = _attack(name)(tiny_cnn, x, y, ThreatModel(norm, 2 * EPS[norm]), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        predictions = tiny_cnn(result.x_adv).argmax(1)
    assert torch.equal(result.success, predictions != y)
    assert torch.equal(result.predictions, predictions)
    assert result.success.any(), "a large eps should fool the random model on some points"


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_targeted_success_means_target_predicted(name, norm, tiny_cnn, toy_batch):
    if not ATTACKS.get(name).supports_target:
        pytest.skip(f"{name} picks its own targets")
    x, y = toy_batch
    target = (y + 1) % 4
    result = _attack(name)(tiny_cnn, x, y, ThreatModel(norm, 4 * EPS[norm]), target=target,
                           generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        predictions = tiny_cnn(result.x_adv).argmax(1)
    assert torch.equal(result.success, predictions == target)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_zero_eps_changes_nothing(name, norm, tiny_cnn, toy_batch):
    x, y = toy_batch
    result = _attack(name)(tiny_cnn, x, y, ThreatModel(norm, 0.0), generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.x_adv, x) and not result.success.any()


@pytest.mark.parametrize("name", ATTACKS.names())
def test_float64_model_and_empty_batch(name, tiny_cnn, toy_batch):
    x, y = toy_batch
    model = tiny_cnn.double()
    threat = ThreatModel(_first_norm(name), EPS[_first_norm(name)])
    result = _attack(name)(model, x.double(), y, threat, generator=torch.Generator().manual_seed(0))
    assert result.x_adv.dtype == torch.float64
    empty = _attack(name)(model, x[:0].double(), y[:0], threat)
    assert empty.x_adv.shape[0] == 0 and empty.success.shape == (0,)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_inputs_outside_the_box_are_refused(name, tiny_cnn, toy_batch):
    x, y = toy_batch
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        _attack(name)(tiny_cnn, x * 2 - 0.5, y, ThreatModel(_first_norm(name), EPS[_first_norm(name)]))


@pytest.mark.parametrize("name", ATTACKS.names())
def test_passes_are_counted(name, tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel(_first_norm(name), EPS[_first_norm(name)])
    result = _attack(name)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(0))
    # At least the attack's own query and the final check; score-based attacks need no backward pass,
    # Jacobian-based ones (FAB) several per forward.
    assert result.passes.forward >= 2 and result.passes.forward_samples >= 2 * len(x)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_a_norm_the_attack_does_not_declare_is_refused(name, tiny_cnn, toy_batch):
    x, y = toy_batch
    declared = getattr(ATTACKS.get(name), "norms", ("linf", "l2"))
    for norm in sorted(set(EPS) - set(declared)):
        with pytest.raises(InputError, match=f"not {norm}"):
            _attack(name)(tiny_cnn, x, y, ThreatModel(norm, EPS[norm]))


@pytest.mark.parametrize("name", ATTACKS.names())
def test_a_seed_is_a_generator_seeded_with_it(name, tiny_cnn, toy_batch):
    x, y = toy_batch
    threat = ThreatModel(_first_norm(name), EPS[_first_norm(name)])
    a = _attack(name)(tiny_cnn, x, y, threat, seed=7)
    b = _attack(name)(tiny_cnn, x, y, threat, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.x_adv, b.x_adv)
    with pytest.raises(InputError, match="not both"):
        _attack(name)(tiny_cnn, x, y, threat, seed=7, generator=torch.Generator())


@pytest.mark.parametrize("name", [n for n in ATTACKS.names() if ATTACKS.get(n).query_only])
def test_a_query_only_attack_takes_no_backward_pass(name, tiny_cnn, toy_batch):
    x, y = toy_batch
    result = _attack(name)(tiny_cnn, x, y, ThreatModel(_first_norm(name), EPS[_first_norm(name)]),
                           generator=torch.Generator().manual_seed(0))
    assert result.passes.backward_samples == 0 and result.passes.forward_samples > 0
