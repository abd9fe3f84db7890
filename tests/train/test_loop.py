"""The training loop: resume after a crash gives the same weights; the overfitting guard keeps the best epoch."""

from __future__ import annotations

import logging

import pytest
import torch

from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train import TRAINERS, FitConfig, fit, loop
from bastion.train.augment import augment, resolve_augment
from bastion.train.checkpoint import load_checkpoint
from bastion.train.schedule import SCHEDULES, ramped_eps
from tests.train.tiny import seeded_mlp

THREAT = ThreatModel("linf", 0.1)


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-sample:train", limit=128)


class Crash(Exception):
    pass


def crashing(name: str, after: int):
    """A trainer that raises after `after` steps, as a run killed mid-epoch would stop."""
    trainer = TRAINERS.create(name, **({"steps": 2} if name == "pgd-at" else {}))
    calls = {"n": 0}
    original = trainer.loss

    def loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise Crash
        return original(*args, **kwargs)

    trainer.loss = loss
    return trainer


@pytest.mark.parametrize("name", ["pgd-at", "free"])
def test_resume_after_a_crash_mid_epoch_gives_the_same_weights(name, data, tmp_path):
    config = FitConfig(epochs=3, batch_size=32, schedule="cyclic", ramp_epochs=1, check_size=0, seed=3)
    options = {"steps": 2} if name == "pgd-at" else {"replays": 2}
    straight = seeded_mlp()
    fit(straight, TRAINERS.create(name, **options), data, threat=THREAT, config=config, out=tmp_path / "a")

    broken = seeded_mlp()
    trainer = crashing(name, after=6) if name == "pgd-at" else TRAINERS.create(name, **options)
    if name == "free":  # crash inside the second epoch through the step itself
        original, calls = trainer.step, {"n": 0}

        def step(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > 6:
                raise Crash
            return original(*args, **kwargs)

        trainer.step = step
    with pytest.raises(Crash):
        fit(broken, trainer, data, threat=THREAT, config=config, out=tmp_path / "b")
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    resumed = seeded_mlp(seed=99)  # other initial weights: everything must come from the checkpoint
    result = fit(resumed, TRAINERS.create(name, **options), data, threat=THREAT, config=config,
                 out=tmp_path / "b", resume=True)
    assert len(result.history) == 3
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_resume_refuses_other_settings(data, tmp_path):
    config = FitConfig(epochs=1, batch_size=64, check_size=0)
    fit(seeded_mlp(), TRAINERS.create("standard"), data, config=config, out=tmp_path)
    with pytest.raises(InputError, match="lr"):
        fit(seeded_mlp(), TRAINERS.create("standard"), data, config=FitConfig(epochs=1, batch_size=64, lr=0.1,
                                                                              check_size=0), out=tmp_path, resume=True)
    with pytest.raises(InputError, match="method"):
        fit(seeded_mlp(), TRAINERS.create("gaussian"), data, config=config, out=tmp_path, resume=True)
    with pytest.raises(InputError, match="no checkpoint"):
        fit(seeded_mlp(), TRAINERS.create("standard"), data, config=config, out=tmp_path / "none", resume=True)


def test_guard_keeps_the_best_robust_epoch_and_warns_on_collapse(data, monkeypatch, caplog):
    """Held-out PGD accuracy 0.5, 0.8, 0.05: a collapse after epoch 2, whose weights must be returned."""
    robust, snapshots = iter([0.5, 0.8, 0.05]), []

    def fake_check(model, check, threat, **kwargs):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return 0.9, next(robust)

    monkeypatch.setattr(loop, "heldout_accuracy", fake_check)
    model = seeded_mlp()
    config = FitConfig(epochs=3, batch_size=64, check_size=16)
    with caplog.at_level(logging.WARNING, logger="bastion.train.loop"):
        result = fit(model, TRAINERS.create("fgsm-rs"), data, threat=THREAT, config=config, val=data)
    assert result.selected_epoch == 2
    for key, value in result.state_dict.items():
        assert torch.equal(value, snapshots[1][key])
    assert not torch.equal(result.state_dict["1.weight"], model.state_dict()["1.weight"])
    assert len(result.warnings) == 1 and "catastrophic overfitting" in caplog.text
    assert [row["val_robust"] for row in result.history] == [0.5, 0.8, 0.05]


def test_guard_fires_on_a_run_made_to_overfit(data, monkeypatch):
    """No keep_best for pgd-at by default: the last epoch is returned, yet the collapse still warns."""
    robust = iter([0.6, 0.1])
    monkeypatch.setattr(loop, "heldout_accuracy", lambda *a, **k: (0.9, next(robust)))
    result = fit(seeded_mlp(), TRAINERS.create("pgd-at", steps=1), data, threat=THREAT,
                 config=FitConfig(epochs=2, batch_size=64, check_size=8), val=data)
    assert result.selected_epoch == 2 and len(result.warnings) == 1


def test_guard_warns_when_the_training_attack_is_too_weak(data, monkeypatch):
    """Training-attack accuracy far above held-out PGD accuracy is the signature of a failed fast method."""
    monkeypatch.setattr(loop, "heldout_accuracy", lambda *a, **k: (0.9, 0.0))
    monkeypatch.setattr(loop, "_accuracies", lambda totals, short=False: {} if short else {"robust_accuracy": 0.7})
    result = fit(seeded_mlp(), TRAINERS.create("fgsm-rs"), data, threat=THREAT,
                 config=FitConfig(epochs=2, batch_size=64, check_size=8), val=data)
    assert len(result.warnings) == 1 and "too weak" in result.warnings[0]


def test_adversarial_methods_need_a_threat_model(data):
    with pytest.raises(InputError, match="threat model"):
        fit(seeded_mlp(), TRAINERS.create("pgd-at"), data, config=FitConfig(epochs=1))


@pytest.mark.parametrize(("field", "value"), [("epochs", 0), ("batch_size", 0), ("ramp_epochs", -1.0)])
def test_bad_loop_settings(field, value):
    with pytest.raises(InputError, match=field):
        FitConfig(**{field: value})


def test_schedules_and_ramp():
    assert SCHEDULES["cyclic"](0.0) == 0.0 and SCHEDULES["cyclic"](0.4) == pytest.approx(1.0)
    assert SCHEDULES["cyclic"](1.0) == 0.0 and SCHEDULES["piecewise"](0.8) == pytest.approx(0.01)
    assert ramped_eps(0.3, 0.5, 2.0) == pytest.approx(0.075) and ramped_eps(0.3, 5.0, 2.0) == 0.3


def test_augment_shifts_digits_and_flips_colour_images():
    assert resolve_augment("auto", (1, 28, 28)) == (2, False)
    assert resolve_augment("auto", (3, 32, 32)) == (4, True)
    x = torch.rand(8, 1, 28, 28)
    out = augment(x, 2, False, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and float(out.sum()) <= float(x.sum()) + 1e-4
    with pytest.raises(InputError):
        resolve_augment("rotate", (1, 28, 28))


def test_mixed_precision_path_runs_where_autocast_exists(data):
    """The CUDA path (bf16 autocast, channels_last) forced on, on the CPU."""
    result = fit(seeded_mlp(), TRAINERS.create("pgd-at", steps=1), data, threat=THREAT,
                 config=FitConfig(epochs=1, batch_size=64, check_size=0, amp=True))
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
