"""Universal perturbations: inside their ball, learned on one set, scored on images never seen; saved and CLI."""

import json
import struct

import pytest
import torch
from torch import nn

from bastion.attacks.universal import UniversalPerturbation, evaluate_universal, fooling_rate
from bastion.cli import main
from bastion.errors import InputError
from bastion.threat import ThreatModel
from tests.conftest import linear_model

EPS = {"linf": 0.1, "l2": 0.8}
FAST = {"uap": {"epochs": 2}, "sgd": {"epochs": 3, "batch_size": 16}}


class Recorder(nn.Module):
    """Keeps a copy of every input the model is asked about."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().flatten(1).clone())
        return self.model(x)


def _images(n, seed):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["uap", "sgd"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_lies_in_its_ball_and_learns_only_from_training_images(method, norm, tiny_cnn):
    x_train, x_held = _images(48, 1), _images(48, 2)
    with torch.no_grad():
        y_train, y_held = tiny_cnn(x_train).argmax(1), tiny_cnn(x_held).argmax(1)
    threat = ThreatModel(norm, EPS[norm])
    recorder = Recorder(tiny_cnn)
    result = UniversalPerturbation(method=method, **FAST[method]).fit(
        recorder, x_train, y_train, threat, generator=torch.Generator().manual_seed(0))
    assert result.delta.shape == (1, 8, 8) and result.delta.abs().max() > 0
    assert threat.norm.measure(result.delta.unsqueeze(0))[0] <= threat.eps + 1e-6
    assert result.passes.forward_samples >= len(x_train) and 0 <= result.train_fooling_rate <= 1
    # Every point the model saw while learning is nearer a training image than any held-out one.
    seen = torch.cat(recorder.seen)
    assert (torch.cdist(seen, x_train.flatten(1)).amin(1) < torch.cdist(seen, x_held.flatten(1)).amin(1)).all()
    score = evaluate_universal(tiny_cnn, result.delta, x_held, y_held)
    with torch.no_grad():
        flipped = tiny_cnn((x_held + result.delta).clamp(0, 1)).argmax(1) != y_held
    assert score.n == 48 and score.fooling_rate == pytest.approx(flipped.float().mean().item())
    assert score.clean_accuracy == 1.0 and score.perturbed_accuracy == pytest.approx(1 - score.fooling_rate)


@pytest.mark.parametrize("method", ["uap", "sgd"])
def test_finds_the_universal_direction_of_a_linear_model(method):
    # Class 1 whenever w . x > 0.5 * sum(w); a shift of -eps * sign(w) fools every image with a small margin.
    w = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0)).abs()
    model = linear_model(w, bias=-0.5 * float(w.sum()))
    x_train, x_held = (0.5 + 0.01 + 0.02 * _images(n, s) for n, s in ((64, 3), (64, 4)))
    y_train = torch.ones(64, dtype=torch.long)
    threat = ThreatModel("linf", 0.1)
    result = UniversalPerturbation(method=method, epochs=5, target_fooling=1.0).fit(
        model, x_train, y_train, threat, generator=torch.Generator().manual_seed(0))
    assert fooling_rate(model, result.delta, x_held) == 1.0
    assert result.delta.mean() < 0


def test_save_writes_tensor_and_png(tmp_path, tiny_cnn):
    x = _images(32, 5)
    with torch.no_grad():
        y = tiny_cnn(x).argmax(1)
    result = UniversalPerturbation(method="sgd", epochs=1).fit(tiny_cnn, x, y, ThreatModel("linf", 0.1))
    tensor_path, png_path = result.save(tmp_path / "out", scale=3)
    record = torch.load(tensor_path, weights_only=True)
    assert torch.equal(record["delta"], result.delta) and record["norm"] == "linf" and record["eps"] == 0.1
    data = png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (24, 24)


def test_refuses_bad_settings(tiny_cnn):
    x = _images(8, 6)
    y = torch.zeros(8, dtype=torch.long)
    with pytest.raises(InputError, match="uap, sgd"):
        UniversalPerturbation(method="adam").fit(tiny_cnn, x, y, ThreatModel("linf", 0.1))
    with pytest.raises(InputError, match="linf and l2"):
        UniversalPerturbation().fit(tiny_cnn, x, y, ThreatModel("l0", 2))


def test_cli_trains_on_train_split_and_scores_on_eval_split(tmp_path, capsys):
    out = tmp_path / "uni"
    code = main(["universal", "--model", "zoo:mnist-cnn", "--data", "mnist-sample:train", "--limit", "64",
                 "--eval-limit", "64", "--method", "sgd", "--epochs", "1", "--eps", "0.2", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "universal.json").read_text())
    assert summary["train_data"] == "mnist-sample:train" and summary["eval_data"] == "mnist-sample:eval"
    assert summary["n_train"] == 64 and summary["held_out"]["n"] == 64 and summary["norm_of_delta"] <= 0.2 + 1e-6
    assert (out / "universal.png").is_file() and (out / "universal.pt").is_file()
    same = ["universal", "--model", "zoo:mnist-cnn", "--data", "mnist-sample:eval", "--eval-data", "mnist-sample:eval"]
    assert main([*same, "--out", str(tmp_path / "x")]) == 2
    assert "differ" in capsys.readouterr().err
