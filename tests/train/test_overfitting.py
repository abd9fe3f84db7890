"""Catastrophic overfitting, for real: plain FGSM training (no random start) collapses, and the guard catches it.

Wong, Rice & Kolter (ICLR 2020) show that FGSM training from a zero start overfits to its own
attack: held-out PGD accuracy rises for a few epochs, then falls while accuracy against the
training attack keeps climbing. No monkeypatching here: a small CNN is trained on 4,000 MNIST
images at Linf eps = 0.2 (ramped over two epochs), the guard's PGD check runs on 200 held-out
images, and the returned weights must be the best robust epoch's.
"""

from __future__ import annotations

import torch
from torch import nn

from bastion.data import load_dataset
from bastion.threat import ThreatModel
from bastion.train import TRAINERS, FitConfig, fit
from bastion.train._check import heldout_accuracy

THREAT = ThreatModel("linf", 0.2)


def small_cnn() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10),
        )


def test_plain_fgsm_training_overfits_and_the_guard_keeps_the_best_robust_epoch():
    data = load_dataset("mnist-sample:train", limit=4000)
    val = load_dataset("mnist-sample:eval", limit=200)
    config = FitConfig(epochs=12, batch_size=64, lr=1e-3, schedule="constant", ramp_epochs=2, augment="none",
                       check_size=len(val), check_steps=10, seed=0)
    model = small_cnn()
    trainer = TRAINERS.create("fgsm-rs", rel_step=1.0, random_start=False)
    result = fit(model, trainer, data, threat=THREAT, config=config, val=val)

    robust = [row["val_robust"] for row in result.history]
    trained = [row["train_robust_accuracy"] for row in result.history]
    best_epoch = max(range(len(robust)), key=lambda i: robust[i]) + 1
    # The run really overfits: robust accuracy collapses from its peak while the training attack's keeps rising.
    assert max(robust) - robust[-1] > config.collapse_drop
    assert trained[-1] > trained[best_epoch - 1]
    assert any("fell from" in w and f"epoch {best_epoch}" in w for w in result.warnings)
    # The weights returned are the best robust epoch's: re-checking them gives that epoch's number.
    assert result.selected_epoch == best_epoch
    model.load_state_dict(result.state_dict)
    _, rechecked = heldout_accuracy(model, val, THREAT, steps=config.check_steps, seed=config.seed + 1)
    assert rechecked == robust[best_epoch - 1]
