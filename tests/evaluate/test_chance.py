"""A model at chance (an untrained factory, say) gets a warning and a verdict that does not call it reliable."""

from __future__ import annotations

import json

import torch
from torch import nn

from bastion.chance import MIN_POINTS, near_chance
from bastion.cli import main
from bastion.data import ImageSet, load_dataset
from bastion.evaluate import EvalConfig, evaluate_model
from bastion.evaluate.verdicts import chance_finding
from bastion.models import load_zoo_model
from bastion.train.card import outcome_warnings


def test_the_chance_rule_needs_enough_points_and_is_the_one_training_uses():
    assert near_chance(0.1, 10, 100) and near_chance(0.0, 10, MIN_POINTS) and near_chance(0.15, 10, 100)
    assert not near_chance(0.16, 10, 100) and not near_chance(0.9, 10, 100)
    assert not near_chance(0.0, 10, MIN_POINTS - 1)  # too few points to say so
    assert near_chance(0.5, 2, 100) and not near_chance(0.8, 2, 100)  # chance 0.5 +- 0.25 with two classes
    for clean in (0.05, 0.15, 0.16, 0.5):  # the model card's warning fires exactly where the rule does
        assert bool(outcome_warnings(clean, None, [], 10, adversarial=False)) == near_chance(clean, 10)


def test_a_factory_without_weights_must_show_it_learned():
    # 4 of 20 right (an untrained CNN does this on one seed in six): not at chance by the point estimate,
    # but not clearly above it either; without --weights that is no evidence of a trained model.
    assert chance_finding(4, 20, 10) is None
    assert chance_finding(4, 20, 10, unweighted=True) is not None
    assert chance_finding(0, 3, 10, unweighted=True) is not None and chance_finding(0, 3, 10) is None
    assert chance_finding(18, 20, 10, unweighted=True) is None  # a factory that loads trained weights itself
    assert chance_finding(2, 20, 10) is not None and chance_finding(0, 0, 10) is None


class _OneClass(nn.Module):
    """Predicts class 0 whatever the input: an at-chance classifier with a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10, dtype=x.dtype, device=x.device)
        logits[:, 0] = 1.0
        return logits * self.scale + 0 * x.flatten(1).sum(1, keepdim=True)


def test_a_model_at_chance_is_meaningless_and_an_honest_one_stays_reliable():
    data = load_dataset("mnist-sample", limit=40)
    config = EvalConfig.build(eps=0.3, suite="pgd", steps=5, restarts=1, curve_points=0)
    chance = evaluate_model(_OneClass(), data, config)
    assert chance.summary.clean_accuracy <= 0.15
    assert chance.verdict.verdict == "meaningless"
    assert [f.check for f in chance.verdict.fired][:1] == ["chance-level"]
    assert any("chance" in w and "verdict is meaningless" in w for w in chance.warnings)
    honest = evaluate_model(load_zoo_model("mnist-cnn-at"), data, config)
    assert honest.verdict.verdict == "reliable" and not any("chance" in w for w in honest.warnings)
    # Too few points to say so: nothing is claimed.
    few = ImageSet(images=data.images[:5], labels=data.labels[:5], classes=data.classes, name="five")
    assert evaluate_model(_OneClass(), few, config).verdict.verdict != "meaningless"


def test_an_untrained_factory_is_warned_about_in_the_terminal_and_the_report(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    code = main(["evaluate", "--model", "bastion.models.nets:MnistCNN", "--data", "mnist-sample", "--limit", "20",
                 "--suite", "pgd", "--steps", "3", "--restarts", "1", "--curve-points", "0", "--out", str(out),
                 "--no-db", "--quiet"])
    assert code == 0
    captured = capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["verdict"] != "reliable"
    assert any("without --weights" in w for w in report["warnings"])
    assert any("without --weights" in r.getMessage() for r in caplog.records)  # logged before the work starts
    assert "warning: bastion.models.nets:MnistCNN was built by its factory without --weights" in captured.out
    assert "verdict MEANINGLESS" in captured.out
    html = (out / "report.html").read_text()
    assert "without --weights" in html and "meaningless" in html.lower()


def test_the_python_api_warns_about_a_factory_spec_too():
    import bastion

    report = bastion.evaluate("bastion.models.nets:MnistCNN", "mnist-sample", eps=0.3, limit=12, suite="pgd", steps=1,
                              restarts=1, curve_points=0)
    assert any("without --weights" in w for w in report.warnings)
    zoo = bastion.evaluate("zoo:mnist-cnn", "mnist-sample", eps=0.3, limit=12, suite="pgd", steps=1, restarts=1,
                           curve_points=0)
    assert not any("without --weights" in w for w in zoo.warnings)
