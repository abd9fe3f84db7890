"""Every registered training method runs and lowers its loss; each loss matches its formula by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.threat import ThreatModel
from bastion.train import TRAINERS, FitConfig, fit
from bastion.train.mart import boosted_ce
from bastion.train.trades import kl_rows
from tests.conftest import linear_model
from tests.train.tiny import seeded_mlp

OPTIONS = {"pgd-at": {"steps": 2}, "mixed": {"steps": 2}, "trades": {"steps": 2, "beta": 1.0},
           "mart": {"steps": 2, "beta": 1.0}, "free": {"replays": 2}, "gaussian": {"sigma": 0.25}}


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-sample:train", limit=256)


def build(name: str):
    options = dict(OPTIONS.get(name, {}))
    if name == "distill":
        options["teacher"] = seeded_mlp(1)
        options["temperature"] = 2.0
    return TRAINERS.create(name, **options)


@pytest.mark.parametrize("name", TRAINERS.names())
def test_method_lowers_training_loss(name, data):
    model = seeded_mlp()
    config = FitConfig(epochs=3, batch_size=64, lr=3e-3, schedule="constant", augment="none", check_size=0)
    result = fit(model, build(name), data, threat=ThreatModel("linf", 0.1), config=config)
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert result.selected_epoch == 3


def test_losses_at_zero_budget_reduce_to_their_clean_formulas():
    """With eps = 0 every adversarial point is x itself, so each loss has a closed form."""
    model = seeded_mlp().eval()
    x, y = load_dataset("mnist-sample:train", limit=32).batch(slice(None))
    threat = ThreatModel("linf", 0.0)
    logits = model(x)
    ce = F.cross_entropy(logits, y)
    torch.testing.assert_close(TRAINERS.create("pgd-at").loss(model, x, y, threat).loss, ce)
    torch.testing.assert_close(TRAINERS.create("mixed", mix=0.3).loss(model, x, y, threat).loss, ce)
    torch.testing.assert_close(TRAINERS.create("fgsm-rs").loss(model, x, y, threat).loss, ce)
    torch.testing.assert_close(TRAINERS.create("gaussian", sigma=0.0).loss(model, x, y, threat).loss, ce)
    torch.testing.assert_close(TRAINERS.create("standard", temperature=2.0).loss(model, x, y, threat).loss,
                               F.cross_entropy(logits / 2.0, y))
    # TRADES starts from x + 0.001 N(0, I), clipped to the eps = 0 ball: the KL term vanishes.
    torch.testing.assert_close(TRAINERS.create("trades", beta=6.0).loss(model, x, y, threat).loss, ce)
    probs = logits.softmax(1)
    others = probs.clone()
    others[torch.arange(len(y)), y] = -1
    by_hand = (-probs[torch.arange(len(y)), y].log() - torch.log(1.0001 - others.amax(1) + 1e-12)).mean()
    torch.testing.assert_close(TRAINERS.create("mart", beta=6.0).loss(model, x, y, threat).loss, by_hand)
    torch.testing.assert_close(boosted_ce(logits, y).mean(), by_hand)
    temp = 3.0
    soft = (logits / temp).softmax(1)
    entropy = -(soft * soft.log()).sum(1).mean()
    torch.testing.assert_close(TRAINERS.create("distill", teacher=model, temperature=temp).loss(model, x, y,
                                                                                                  threat).loss, entropy)


def test_kl_rows_matches_definition():
    p, q = torch.randn(4, 5), torch.randn(4, 5)
    by_hand = (p.softmax(1) * (p.softmax(1).log() - q.softmax(1).log())).sum(1)
    torch.testing.assert_close(kl_rows(p, q), by_hand)
    torch.testing.assert_close(kl_rows(p, p), torch.zeros(4))


@pytest.mark.parametrize("name", ["pgd-at", "fgsm-rs"])
def test_adversarial_point_is_the_closed_form_worst_case_of_a_linear_model(name):
    """Linear two-class model, logit gap w.x: the Linf worst case for class 1 is x - eps * sign(w)."""
    w = torch.tensor([1.0, -2.0, 0.5, -0.25])
    model = linear_model(w)
    x, y = torch.full((1, 1, 2, 2), 0.5), torch.tensor([1])
    eps, seen = 0.2, {}
    trainer = TRAINERS.create(name, **({"steps": 20} if name == "pgd-at" else {"rel_step": 2.0}))
    original = model.forward

    def spy(inp):
        seen["x"] = inp.detach()
        return original(inp)

    model.forward = spy  # the last forward pass is the training pass on the adversarial point
    out = trainer.loss(model, x, y, ThreatModel("linf", eps), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen["x"], x - eps * torch.sign(w).view(1, 1, 2, 2))
    worst = F.cross_entropy(original(x - eps * torch.sign(w).view(1, 1, 2, 2)), y)
    torch.testing.assert_close(out.loss, worst)


def test_free_replays_update_weights_each_replay(data):
    model = seeded_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    state: dict[str, torch.Tensor] = {}
    x, y = data.batch(slice(0, 16))
    TRAINERS.create("free", replays=3).step(model, optimizer, x, y, ThreatModel("linf", 0.1), state=state)
    assert state["delta"].shape == x.shape and float(state["delta"].abs().max()) <= 0.1 + 1e-6
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(("name", "options"), [("trades", {"beta": -1.0}), ("mixed", {"mix": 2.0}),
                                                 ("pgd-at", {"steps": 0}), ("gaussian", {"sigma": -0.1}),
                                                 ("free", {"replays": 0}), ("pgd-at", {"beta": 1.0})])
def test_bad_options_are_input_errors(name, options):
    with pytest.raises(InputError):
        TRAINERS.create(name, **options)


def test_distill_needs_a_teacher():
    assert TRAINERS.create("distill", teacher=nn.Linear(2, 2)).settings()["teacher"] == "Linear"
    for teacher in (None, "zoo:mnist-cnn"):
        with pytest.raises(InputError, match="teacher"):
            TRAINERS.create("distill", teacher=teacher)


def test_each_loss_matches_its_formula_at_the_known_worst_case():
    """A two-class linear model at a corner of the box: the only feasible move lowers the logit gap.

    Logit gap g = w . x. With x_i = 1 where w_i > 0 and x_i = 0 where w_i < 0, raising g leaves the
    box, so for cross-entropy (y = 1) and for KL(f(x) || f(x')) alike the worst point of the Linf ball
    is x* = x - eps sign(w), with gap g* = g - eps ||w||_1. Each method's loss is then a closed
    formula of g and g* (the papers' equations, written out by hand below).
    """
    w = torch.tensor([1.0, -2.0, 0.5, -0.25])
    model = linear_model(w)
    x, y = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2), torch.tensor([1])
    eps = 0.2
    threat = ThreatModel("linf", eps)
    g = float(w @ x.flatten())
    g_adv = g - eps * float(w.abs().sum())
    p, p_adv = torch.sigmoid(torch.tensor(g)), torch.sigmoid(torch.tensor(g_adv))
    ce, ce_adv = -torch.log(p), -torch.log(p_adv)
    kl = p * torch.log(p / p_adv) + (1 - p) * torch.log((1 - p) / (1 - p_adv))

    def loss(name: str, **options: float) -> torch.Tensor:
        trainer = TRAINERS.create(name, **options)
        return trainer.loss(model, x, y, threat, generator=torch.Generator().manual_seed(0)).loss

    torch.testing.assert_close(loss("pgd-at", steps=20), ce_adv)
    torch.testing.assert_close(loss("mixed", steps=20, mix=0.3), 0.7 * ce + 0.3 * ce_adv)
    torch.testing.assert_close(loss("trades", steps=20, beta=6.0), ce + 6.0 * kl)
    boosted = ce_adv - torch.log(1.0001 - (1 - p_adv) + 1e-12)  # MART eq. 8: -log p_y - log(1 - max_k!=y p_k)
    torch.testing.assert_close(loss("mart", steps=20, beta=6.0), boosted + 6.0 * kl * (1.0000001 - p))
    torch.testing.assert_close(loss("fgsm-rs"), ce_adv)  # the box clips the random start: one 1.25 eps step reaches x*
    teacher = linear_model(-w)
    t = 4.0
    soft = torch.sigmoid(torch.tensor(-g / t))  # the teacher's class-1 probability at temperature t
    own = torch.sigmoid(torch.tensor(g / t))
    distill = -(soft * torch.log(own) + (1 - soft) * torch.log(1 - own))
    torch.testing.assert_close(TRAINERS.create("distill", teacher=teacher, temperature=t).loss(model, x, y,
                                                                                                threat).loss, distill)
