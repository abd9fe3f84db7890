"""Issue 26: numbers that mean what they say, and one line (exit 2) for each input a careful user still trips on."""

import json
import os
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from bastion.attacks import ATTACKS
from bastion.cli import main
from bastion.epsrange import check_eps
from bastion.errors import InputError

from .test_first_hour_errors import _fails

ATTACK = ["--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "4", "--quiet"]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model is loaded: the refusal must come before any work."""
    monkeypatch.setattr("bastion.cli.attack.load_model_from_args", lambda *a: pytest.fail("the model was loaded"))


@pytest.mark.parametrize(("extra", "message"), [
    (["--eps", "0"], "--eps 0 allows no perturbation"),
    (["--eps", "8"], "did you mean 8/255?"),
    (["--eps", "1"], "not smaller than the input range [0, 1]"),
    (["--norm", "l2", "--eps", "28"], "sqrt(784) for 784 values"),
    (["--norm", "l2", "--eps", "300"], "give a smaller radius"),
])
def test_attack_refuses_eps_zero_and_beyond_the_input_range(capsys, no_model, extra, message):
    _fails(capsys, ["attack", "fgsm", *ATTACK, *extra], message)


def test_eps_just_inside_the_range_is_accepted():
    check_eps("linf", 0.99)
    check_eps("l2", 27.9, shape=(1, 28, 28))
    check_eps("l2", 100.0)  # the L2 bound needs the input size
    check_eps("l0", 0.0)  # a pixel count, not a radius in the box
    with pytest.raises(InputError, match="did you mean 2/255"):
        check_eps("linf", 2.0, bounds=(-1.0, 1.0))


def test_evaluate_refuses_eps_8_before_creating_its_output(tmp_path, capsys):
    out = tmp_path / "run"
    _fails(capsys, ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "8", "--out", str(out)],
           "did you mean 8/255?")
    _fails(capsys, ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "0", "--out", str(out)],
           "eps 0 allows no perturbation")
    assert not out.exists()


def test_train_refuses_eps_8(tmp_path, capsys):
    _fails(capsys, ["train", "--model", "bastion.models.nets:MnistCNN", "--method", "pgd-at", "--eps", "8", "--epochs",
                    "1", "--limit", "64", "--out", str(tmp_path / "t"), "--quiet", "--no-db"], "did you mean 8/255?")


def test_eps_max_is_refused_for_attacks_with_a_radius(capsys, no_model):
    line = _fails(capsys, ["attack", "fgsm", *ATTACK, "--eps", "max"], "for the minimal-norm attacks")
    named = line.split("minimal-norm attacks (")[1].split(")")[0].split(", ")
    assert named == [n for n in ATTACKS.names() if ATTACKS.get(n).minimizes_norm] and "cw" in named
    assert "fgsm" not in named


def test_transfer_without_a_surrogate_is_refused(capsys, no_model):
    _fails(capsys, ["attack", "transfer", *ATTACK, "--eps", "0.1"], "bastion attack transfer needs --surrogate")


def _npz_files(tmp_path):
    np.savez_compressed(tmp_path / "good.npz", x=np.random.rand(20, 1, 28, 28).astype(np.float32),
                        y=np.zeros(20, np.int64))
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    damaged = bytearray(data)
    damaged[len(data) // 3: len(data) // 3 + 64] = bytes(64)
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(4000))
    np.save(tmp_path / "single.npy", np.zeros(3))
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    np.savez(tmp_path / "objects.npz", x=np.zeros((2, 1, 28, 28), np.float32), y=np.zeros(2, np.int64),
             classes=np.array([object()] * 10, dtype=object))


@pytest.mark.parametrize(("name", "message"), [
    ("truncated", "is not a valid .npz archive of arrays: truncated or damaged"),
    ("damaged", "is not a valid .npz archive of arrays: truncated or damaged"),
    ("random", "is not a valid .npz archive of arrays"),
    ("single", "a single .npy array, not a .npz archive"),
    ("objects", "holds an array of Python objects"),
])
def test_broken_npz_files_get_one_line_without_numpys_advice(tmp_path, capsys, no_model, name, message):
    _npz_files(tmp_path)
    line = _fails(capsys, ["attack", "fgsm", *ATTACK, "--data", f"npz:{tmp_path / name}.npz"], message)
    assert "allow_pickle" not in line and "pickle.load" not in line


def test_train_refuses_labels_the_model_cannot_output(tmp_path, capsys):
    np.savez(tmp_path / "eleven.npz", x=np.random.rand(44, 1, 28, 28).astype(np.float32), y=np.arange(44) % 11)
    _fails(capsys, ["train", "--model", "bastion.models.nets:MnistCNN", "--method", "standard", "--data",
                    f"npz:{tmp_path / 'eleven.npz'}", "--epochs", "1", "--out", str(tmp_path / "t"), "--quiet",
                    "--no-db"], "the model outputs 10 classes but the data has 11")


@pytest.mark.parametrize(("content", "message"), [
    (b"these are my weights\n", "is not a torch checkpoint: not a file written by torch.save (it holds text)"),
    (bytes(range(256)) * 8, "is not a torch checkpoint: not a file written by torch.save (its bytes"),
    (None, "is a torch checkpoint holding objects other than tensors"),
])
def test_weights_that_are_not_checkpoints_are_told_apart(tmp_path, capsys, content, message):
    path = tmp_path / "w.pt"
    if content is None:
        torch.save({"net": {"weight": np.zeros(3)}}, path)
    else:
        path.write_bytes(content)
    _fails(capsys, ["attack", "fgsm", *ATTACK, "--model", "bastion.models.nets:MnistCNN", "--weights", str(path)],
           message)


def test_a_state_dict_still_loads_and_a_zip_that_is_not_a_checkpoint_is_named(tmp_path, capsys):
    path = tmp_path / "w.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    _fails(capsys, ["attack", "fgsm", *ATTACK, "--model", "bastion.models.nets:MnistCNN", "--weights", str(path)],
           "do not fit the model")
    with zipfile.ZipFile(tmp_path / "w.zip", "w") as archive:
        archive.writestr("notes.txt", "hi")
    _fails(capsys, ["attack", "fgsm", *ATTACK, "--model", "bastion.models.nets:MnistCNN", "--weights",
                    str(tmp_path / "w.zip")], "a zip archive without torch's data.pkl")


@pytest.mark.parametrize("name", ["model.onnx", "model.pt2", "sub/model.pt"])
def test_a_missing_model_file_is_not_found(tmp_path, capsys, name):
    _fails(capsys, ["attack", "fgsm", *ATTACK, "--model", str(tmp_path / name)],
           f"model file not found: {tmp_path / name}")


def test_attack_out_must_be_npz_and_reads_back_as_data(tmp_path, capsys, monkeypatch):
    _fails(capsys, ["attack", "fgsm", *ATTACK, "--out", str(tmp_path / "adv.json")], "name a file ending in .npz")
    assert not (tmp_path / "adv.json").exists()
    out = tmp_path / "adv.npz"
    argv = ["attack", "fgsm", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "40", "--eps", "0.2",
            "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    first = json.loads(capsys.readouterr().out)
    arrays = np.load(out)
    assert {"x", "y", "norm", "success", "prediction", "clean_prediction", "summary"} <= set(arrays.files)
    assert main(["attack", "fgsm", "--model", "zoo:mnist-cnn", "--data", f"npz:{out}", "--eps", "0.01",
                 "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["n"] == 40 and again["clean_accuracy"] == pytest.approx(first["robust_accuracy"])
    assert first["robust_accuracy"] < first["clean_accuracy"]


def test_evaluate_refuses_an_l2_ball_over_the_whole_box_once_the_data_is_known(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("bastion.evaluate.pipeline.Runner", lambda *a, **k: pytest.fail("a stage ran"))
    _fails(capsys, ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--norm", "l2", "--eps", "30",
                    "--out", str(tmp_path / "run")], "sqrt(784) for 784 values in [0, 1]")
