"""The evaluation protocol's invariants on small models, and the report's JSON round trip."""

import json
from dataclasses import asdict

import pytest
import torch

from bastion._io import write_atomic
from bastion.data import ImageSet
from bastion.errors import InputError
from bastion.evaluate import EvalConfig, EvalResult, evaluate_model
from bastion.evaluate.report_schema import attack_rows, curve_rows
from tests.conftest import TinyCNN
from tests.evaluate.comparable import comparable


@pytest.fixture
def toy_set():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(96, 1, 8, 8, generator=g)
    model = _model()
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[:10] = (labels[:10] + 1) % 4  # ten points the model gets wrong
    return ImageSet(images=images, labels=labels, classes=["a", "b", "c", "d"], name="toy")


def _model():
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def result(toy_set):
    config = EvalConfig.build(model="tiny", data="toy", norm="linf", eps=0.05, steps=5, restarts=2, batch_size=32,
                              suite="pgd")
    return evaluate_model(_model(), toy_set, config)


def test_clean_baseline_and_worst_case(result):
    assert result.clean.top1 == pytest.approx(86 / 96)
    assert result.clean.top5 == 1.0  # 4 classes: the label is always in the top 5
    assert result.summary.robust_accuracy <= result.clean.top1
    # Each attack's cumulative robust accuracy can only fall, and the summary is the last one.
    accuracies = [a.robust_accuracy for a in result.attacks]
    assert accuracies == sorted(accuracies, reverse=True)
    assert result.summary.robust_accuracy == accuracies[-1]


def test_attacks_only_attack_points_still_robust(result):
    fgsm, pgd, *checks = result.attacks
    # Points the gradient-masking audit's black-box check broke beyond PGD-5x2 count too, in their own rows.
    assert all(c.role.startswith("masking check") and c.fooled > 0 for c in checks)
    assert fgsm.attacked == result.clean.n_correct
    assert pgd.attacked == fgsm.attacked - fgsm.fooled
    assert fgsm.standalone_accuracy == fgsm.robust_accuracy
    assert pgd.settings["n_restarts"] == 2 and pgd.settings["steps"] == 5
    assert pgd.passes["backward"] > 0


def test_curve_starts_at_clean_accuracy_falls_and_matches_the_worst_case(result):
    eps = [p.eps for p in result.curve]
    accuracy = [p.accuracy for p in result.curve]
    assert len(eps) == 9 and eps[0] == 0 and eps[-1] == pytest.approx(0.1)
    assert accuracy[0] == result.clean.top1
    assert accuracy == sorted(accuracy, reverse=True)
    at_eps = next(p.accuracy for p in result.curve if abs(p.eps - 0.05) < 1e-9)
    assert at_eps == result.summary.robust_accuracy


def test_per_class_counts_and_flags(result, toy_set):
    assert sum(c.n for c in result.per_class) == len(toy_set)
    for record in result.per_class:
        assert record.flagged == (record.n > 0 and record.robust_accuracy < result.class_floor)
    weighted = sum(c.robust_accuracy * c.n for c in result.per_class) / len(toy_set)
    assert weighted == pytest.approx(result.summary.robust_accuracy)


def test_gallery_shows_real_adversarial_examples(result):
    assert 0 < len(result.gallery) <= 8
    for item in result.gallery:
        assert item.adversarial_prediction != item.label
        assert item.norm <= 0.05 + 1e-6
        assert item.clean_png.startswith("data:image/png;base64,")


def test_json_round_trip(result, tmp_path):
    path = result.save(tmp_path / "report.json")
    data = json.loads(path.read_text())
    for key in ("schema_version", "summary", "stages", "warnings", "provenance"):
        assert key in data
    assert not {"attacks", "curve", "per_class", "class_floor"} & set(data)  # each result once: in its stage
    assert data["schema_version"] == 3 and attack_rows(data) == [asdict(a) for a in result.attacks]
    assert [p["eps"] for p in curve_rows(data)] == [p.eps for p in result.curve] and result.curve
    assert set(data["summary"]) >= {"clean_accuracy", "robust_accuracy", "norm", "eps", "n_samples"}
    assert data["provenance"]["model"]["fingerprint"] and data["provenance"]["data"]["fingerprint"]
    assert EvalResult.load(path) == result


def test_same_seed_same_numbers(toy_set):
    config = EvalConfig.build(model="tiny", data="toy", eps=0.05, steps=3, restarts=2, curve_points=3, suite="pgd")
    a, b = (evaluate_model(_model(), toy_set, config) for _ in range(2))
    assert a.attacks[1].fooled == b.attacks[1].fooled and a.curve == b.curve


def test_warnings_for_probabilities_and_random_outputs(toy_set):
    class Softmaxed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _model()

        def forward(self, x):
            return self.inner(x).softmax(1)

    class Noisy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _model()

        def forward(self, x):
            return self.inner(x + 0.05 * torch.randn_like(x))

    config = EvalConfig.build(model="m", data="toy", eps=0.05, steps=2, restarts=1, curve_points=0, suite="pgd")
    assert any("probabilities" in w for w in evaluate_model(Softmaxed(), toy_set, config).warnings)
    assert any("different outputs" in w for w in evaluate_model(Noisy(), toy_set, config).warnings)


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    write_atomic(tmp_path / "a.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_an_interrupted_run_resumes_to_the_same_result(toy_set, tmp_path, monkeypatch):
    from bastion.evaluate.stages import AttackStage, CleanStage, CurveStage

    config = EvalConfig.build(model="tiny", data="toy", eps=0.03, steps=3, restarts=2, curve_points=4, batch_size=32,
                              suite="autoattack", aa_steps=5, aa_queries=50)
    uninterrupted = evaluate_model(_model(), toy_set, config)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(CurveStage, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(_model(), toy_set, config, state_dir=tmp_path)
    assert (tmp_path / "state.pt").is_file()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.undo()
    monkeypatch.setattr(AttackStage, "run", must_not_run)
    monkeypatch.setattr(CleanStage, "run", must_not_run)
    resumed = evaluate_model(_model(), toy_set, config, resume=True, state_dir=tmp_path)
    assert comparable(resumed) == comparable(uninterrupted)
    assert not (tmp_path / "state.pt").exists()


def test_a_state_from_other_settings_is_refused_not_discarded(toy_set, tmp_path, monkeypatch):
    from bastion.evaluate.stages import PerClassStage

    config = EvalConfig.build(model="tiny", data="toy", eps=0.05, steps=2, restarts=1, curve_points=0, suite="pgd")
    monkeypatch.setattr(PerClassStage, "run", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(_model(), toy_set, config, state_dir=tmp_path)
    monkeypatch.undo()
    other = EvalConfig.build(model="tiny", data="toy", eps=0.1, steps=2, restarts=1, curve_points=0, suite="pgd")
    with pytest.raises(InputError, match=r"eps 0\.05 -> 0\.1"):
        evaluate_model(_model(), toy_set, other, resume=True, state_dir=tmp_path)
    result = evaluate_model(_model(), toy_set, EvalConfig.build(**other.to_dict()),
                            state_dir=tmp_path)  # starting over is what the caller asks for
    assert result.attacks[0].eps == 0.1


def test_autoattack_suite_runs_each_member_on_the_points_still_robust(toy_set):
    config = EvalConfig.build(model="tiny", data="toy", eps=0.02, steps=2, restarts=1, curve_points=0,
                              suite="autoattack", aa_steps=5, aa_queries=50)
    result = evaluate_model(_model(), toy_set, config)
    names = [a.name for a in result.attacks]
    assert names == ["fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "square"]
    for before, after in zip(result.attacks, result.attacks[1:], strict=False):
        assert after.attacked == before.attacked - before.fooled
        assert after.robust_accuracy <= before.robust_accuracy
    assert result.attacks[2].settings["steps"] == 5 and result.attacks[5].settings["n_queries"] == 50


def test_min_norm_profile_in_the_report(toy_set):
    config = EvalConfig.build(model="tiny", data="toy", eps=0.05, steps=2, restarts=1, curve_points=3, min_norm="fab",
                              suite="pgd")
    result = evaluate_model(_model(), toy_set, config)
    profile = result.stage_results["min-norm"].to_dict()
    assert profile is not None and profile["attack"] == "fab"
    assert [p["eps"] for p in profile["curve"]] == [p.eps for p in result.curve]
    accuracy = [p["accuracy"] for p in profile["curve"]]
    assert accuracy[0] == result.clean.top1 and accuracy == sorted(accuracy, reverse=True)
    assert EvalResult.from_dict(json.loads(result.to_json())) == result


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    from bastion._io import write_atomic_with

    target = write_atomic(tmp_path / "state.pt", "old")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic_with(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]
