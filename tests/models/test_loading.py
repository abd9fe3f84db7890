"""Model specs, weights loading that cannot run code, normalization, and the zoo's accuracy bar."""

import pickle

import pytest
import torch
from torch import nn

from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models import Normalized, load_model, load_zoo_model

FACTORY = '''
import torch
from torch import nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

def not_a_model():
    return 42
'''


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(FACTORY)
    return path


def test_file_factory_with_weights(factory_file, tmp_path):
    reference = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    weights = tmp_path / "w.pt"
    torch.save(reference.state_dict(), weights)
    loaded = load_model(f"{factory_file}:build", weights=weights, device="cpu")
    x = torch.rand(2, 1, 2, 2)
    assert torch.allclose(loaded.module(x), reference(x))
    assert not loaded.module.training and len(loaded.fingerprint) == 16


def test_checkpoint_dict_with_state_dict_key(factory_file, tmp_path):
    reference = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    weights = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, weights)
    loaded = load_model(f"{factory_file}:build", weights=weights, device="cpu")
    assert torch.equal(loaded.module[1].weight, reference[1].weight)


def test_module_factory_spec():
    loaded = load_model("tests.conftest:TinyCNN", device="cpu")
    assert type(loaded.module).__name__ == "TinyCNN"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing_file.py:build", "model file not found"),
        ("no_such_module_xyz:build", "cannot import model module"),
        ("tests.conftest:nope", "unknown factory"),
        ("justaname", "cannot load model"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(InputError, match=message):
        load_model(spec, device="cpu")


def test_factory_that_returns_no_module(factory_file):
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        load_model(f"{factory_file}:not_a_model", device="cpu")


def test_missing_weights_file(factory_file, tmp_path):
    with pytest.raises(InputError, match="weights file not found"):
        load_model(f"{factory_file}:build", weights=tmp_path / "none.pt", device="cpu")


def test_weights_that_do_not_fit(factory_file, tmp_path):
    weights = tmp_path / "other.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(5, 3)).state_dict(), weights)
    with pytest.raises(InputError, match="do not fit the model: shape mismatch"):
        load_model(f"{factory_file}:build", weights=weights, device="cpu")
    torch.save({"foo.weight": torch.zeros(1)}, weights)
    with pytest.raises(InputError, match="missing: 1.weight"):
        load_model(f"{factory_file}:build", weights=weights, device="cpu")


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_checkpoint_cannot_run_code(factory_file, tmp_path, capsys):
    weights = tmp_path / "evil.pt"
    with open(weights, "wb") as handle:
        pickle.dump({"1.weight": _Payload()}, handle)
    with pytest.raises(InputError):
        load_model(f"{factory_file}:build", weights=weights, device="cpu")
    assert "code ran" not in capsys.readouterr().out


def test_torchscript_file(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    path = tmp_path / "model.pt"
    torch.jit.script(model).save(str(path))
    loaded = load_model(str(path), device="cpu")
    x = torch.rand(2, 1, 2, 2)
    assert torch.allclose(loaded.module(x), model(x))
    state = tmp_path / "state.pt"
    torch.save(model.state_dict(), state)
    with pytest.raises(InputError, match="not a TorchScript file"):
        load_model(str(state), device="cpu")


def test_normalization_wrapper_standardizes_in_pixel_space():
    inner = nn.Identity()
    model = Normalized(inner, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(model(x), expected)
    with pytest.raises(InputError):
        Normalized(inner, mean=[0.5], std=[0.0])
    with pytest.raises(InputError):
        load_model("tests.conftest:TinyCNN", mean=[0.5], device="cpu")


def test_unknown_zoo_name_and_device():
    with pytest.raises(InputError, match="mnist-cnn"):
        load_model("zoo:nope", device="cpu")
    with pytest.raises(InputError):
        load_model("zoo:mnist-cnn", device="warp-drive")


def test_zoo_mnist_cnn_is_accurate_on_the_eval_split():
    model = load_zoo_model("mnist-cnn")
    x, y = load_dataset("mnist-sample:eval").batch(slice(None))
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.97
