"""Models in the formats users ship: any output type, safetensors, torch.export programs, ONNX.

Every format is checked against the same model loaded the old way (the zoo CNN and a state dict).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bastion.attacks import PGD, Square
from bastion.cli import main
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models import is_gradient_free, load_model, load_zoo_model, prediction_agreement
from bastion.models.checks import checked_logits
from bastion.models.tensorfile import save_safetensors
from bastion.outputs import logits_of, returning_logits
from bastion.threat import ThreatModel

NETS = '''
import torch
from torch import nn
from bastion.models.nets import MnistCNN


class Wrapped(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.net, self.kind = MnistCNN(), kind

    def forward(self, x):
        logits = self.net(x)
        if self.kind == "dict":
            return {"features": x.flatten(1), "logits": logits}
        if self.kind == "tuple":
            return logits, x.flatten(1)
        return {"probs": logits.softmax(1)}


def as_dict():
    return Wrapped("dict")

def as_tuple():
    return Wrapped("tuple")

def no_logits():
    return Wrapped("bad")
'''


@pytest.fixture(scope="module")
def zoo():
    return load_zoo_model("mnist-cnn")


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-sample", limit=32)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets") / "nets.py"
    path.write_text(NETS)
    return path


@pytest.fixture(scope="module")
def zoo_safetensors(zoo, tmp_path_factory):
    path = tmp_path_factory.mktemp("st") / "mnist-cnn.safetensors"
    save_safetensors({f"net.{k}": v for k, v in zoo.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def exported(zoo, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "mnist-cnn.pt2"
    program = torch.export.export(zoo, (torch.rand(4, 1, 28, 28),), dynamic_shapes={"x": {0: torch.export.Dim("b")}})
    torch.export.save(program, path)
    return path


@pytest.fixture(scope="module")
def onnx_file(zoo, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    path = tmp_path_factory.mktemp("onnx") / "mnist-cnn.onnx"
    pytest.importorskip("onnxscript")  # torch.onnx's exporter (torch.export-based, the default) needs it
    torch.onnx.export(zoo, (torch.rand(4, 1, 28, 28),), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    return path


def test_logits_of_accepts_the_common_output_types():
    t = torch.ones(2, 3)
    assert logits_of(t) is t and logits_of({"logits": t}) is t and logits_of((t, 1)) is t and logits_of([t]) is t
    with pytest.raises(InputError, match="without a 'logits' tensor .keys: probs"):
        logits_of({"probs": t})
    with pytest.raises(InputError, match="returned str"):
        logits_of("x")


@pytest.mark.parametrize("factory", ["as_dict", "as_tuple"])
def test_dict_and_tuple_models_give_logits_everywhere(nets, zoo_safetensors, zoo, data, factory):
    loaded = load_model(f"{nets}:{factory}", weights=zoo_safetensors, device="cpu")
    x, y = data.batch(slice(0, 8))
    assert torch.equal(loaded.module(x), zoo(x))  # the adapter, and safetensors weights, change no number
    threat = ThreatModel("linf", 0.1)
    assert torch.equal(_pgd(zoo, x, y, threat).x_adv, _pgd(loaded.module, x, y, threat).x_adv)


def test_a_raw_dict_model_works_in_an_attack_without_loading(nets, data):
    raw = load_model(f"{nets}:as_dict", device="cpu").module
    x, y = data.batch(slice(0, 4))
    result = PGD(steps=1)(nn.Sequential(raw), x, y, ThreatModel("linf", 0.1))  # PassCounter applies the adapter
    assert result.x_adv.shape == x.shape


def test_other_outputs_are_refused_in_one_line(nets, data):
    model = load_model(f"{nets}:no_logits", device="cpu").module
    with pytest.raises(InputError, match="without a 'logits' tensor"):
        checked_logits(model, data.batch(slice(0, 2))[0])


def test_returning_logits_keeps_state_dict_and_is_idempotent(zoo):
    model = returning_logits(returning_logits(load_zoo_model("mnist-cnn")))
    assert list(model.state_dict()) == list(zoo.state_dict()) and len(model._forward_hooks) == 1


def test_safetensors_weights_match_the_state_dict(zoo, data, tmp_path):
    pt, st = tmp_path / "w.pt", tmp_path / "w.safetensors"
    torch.save(zoo.state_dict(), pt)
    save_safetensors(zoo.state_dict(), st)
    a = load_model("bastion.models.nets:MnistCNN", weights=pt, device="cpu")
    b = load_model("bastion.models.nets:MnistCNN", weights=st, device="cpu")
    x, _ = data.batch(slice(None))
    assert torch.equal(a.module(x), b.module(x)) and a.fingerprint == b.fingerprint
    st.write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="cannot read .* as safetensors"):
        load_model("bastion.models.nets:MnistCNN", weights=st, device="cpu")


def test_exported_program_matches_eager_and_has_gradients(exported, zoo, data):
    loaded = load_model(str(exported), device="cpu")
    x, y = data.batch(slice(None))
    assert torch.allclose(loaded.module(x), zoo(x), atol=1e-5)
    threat = ThreatModel("linf", 0.2)
    old, new = _pgd(zoo, x, y, threat), _pgd(loaded.module, x, y, threat)
    assert torch.equal(old.success, new.success) and (old.x_adv - new.x_adv).abs().max() < 1e-4
    with pytest.raises(InputError, match="drop --weights"):
        load_model(str(exported), weights=exported, device="cpu")


def test_exported_program_for_another_image_size_says_how_to_export(zoo, tmp_path, data):
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(zoo, (torch.rand(4, 1, 28, 28),)), path)
    with pytest.raises(InputError, match="dynamic_shapes"):  # a fixed batch runs in chunks; other sizes cannot
        load_model(str(path), device="cpu").module(data.batch(slice(0, 3))[0][..., :20, :20])


def test_onnx_matches_pytorch_within_export_tolerance(onnx_file, zoo, data):
    loaded = load_model(str(onnx_file), device="cpu")
    assert loaded.gradient_free and is_gradient_free(loaded.module)
    x, _ = data.batch(slice(None))
    with torch.no_grad():
        onnx_logits, torch_logits = loaded.module(x), zoo(x)
    assert (onnx_logits - torch_logits).abs().max() < 1e-4
    assert torch.equal(onnx_logits.argmax(1), torch_logits.argmax(1))
    agreement = prediction_agreement(loaded.module, zoo, data, batch_size=10)
    assert agreement.rate == 1.0 and agreement.max_logit_diff < 1e-4 and agreement.disagreements == []
    assert agreement.deployed_accuracy == agreement.surrogate_accuracy


def test_onnx_has_no_gradients_but_square_runs(onnx_file, zoo, data):
    model = load_model(str(onnx_file), device="cpu").module
    x, y = data.batch(slice(0, 8))
    with pytest.raises(InputError, match="without gradients"):
        PGD(steps=1)(model, x, y, ThreatModel("linf", 0.1))
    threat = ThreatModel("linf", 0.3)
    deployed = Square(n_queries=20)(model, x, y, threat, generator=torch.Generator().manual_seed(0))
    reference = Square(n_queries=20)(zoo, x, y, threat, generator=torch.Generator().manual_seed(0))
    assert torch.equal(deployed.success, reference.success)


def test_onnx_agreement_shows_a_different_model(onnx_file, data):
    other = load_zoo_model("mnist-cnn-noise")
    agreement = prediction_agreement(load_model(str(onnx_file), device="cpu").module, other, data)
    assert agreement.max_logit_diff > 0.1 and agreement.to_dict()["n"] == 32


def test_cli_square_on_onnx_and_certify(onnx_file, tmp_path, capsys):
    assert main(["attack", "square", "--model", str(onnx_file), "--data", "mnist-sample", "--limit", "16",
                 "--eps", "0.3", "--n-queries", "20", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 16 and summary["clean_accuracy"] > 0.9
    assert main(["attack", "transfer", "--model", str(onnx_file), "--surrogate", "zoo:mnist-cnn", "--data",
                 "mnist-sample", "--limit", "16", "--eps", "0.2", "--quiet"]) == 0
    transfer = json.loads(capsys.readouterr().out)
    assert transfer["robust_accuracy"] < transfer["clean_accuracy"] and transfer["passes"]["backward"] == 0
    assert main(["attack", "pgd", "--model", str(onnx_file), "--data", "mnist-sample", "--limit", "4",
                 "--eps", "0.3", "--quiet"]) == 2
    assert "without gradients" in capsys.readouterr().err
    out = tmp_path / "cert"
    assert main(["certify", "--model", str(onnx_file), "--data", "mnist-sample", "--limit", "2", "--sigma", "0.25",
                 "--n0", "10", "--n", "50", "--out", str(out), "--quiet"]) == 0


EVALUATE = ["--data", "mnist-sample", "--limit", "16", "--eps", "0.1", "--suite", "pgd", "--steps", "2",
            "--restarts", "1", "--curve-points", "0", "--no-fgsm", "--quiet"]


@pytest.fixture(scope="module")
def zoo_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo-eval")
    assert main(["evaluate", "--model", "zoo:mnist-cnn", *EVALUATE, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("form", ["safetensors", "pt2"])
def test_evaluate_end_to_end(form, exported, zoo_safetensors, nets, zoo_report, tmp_path):
    model = ["--model", str(exported)] if form == "pt2" else ["--model", f"{nets}:as_dict", "--weights",
                                                                 str(zoo_safetensors)]
    assert main(["evaluate", *model, *EVALUATE, "--out", str(tmp_path)]) == 0
    assert _accuracies(tmp_path) == _accuracies(zoo_report)


def _pgd(model, x, y, threat):
    return PGD(steps=3)(model, x, y, threat, generator=torch.Generator().manual_seed(0))


def _accuracies(folder: Path) -> list[float]:
    """Every accuracy in a report (clean, robust, per class, per attack), sorted."""
    return sorted(_numbers(json.loads((folder / "report.json").read_text()), "accuracy"))


def _numbers(node: object, key: str) -> list[float]:
    if isinstance(node, dict):
        found = [float(v) for k, v in node.items() if key in k and isinstance(v, (int, float))]
        return found + [n for v in node.values() for n in _numbers(v, key)]
    if isinstance(node, list):
        return [n for v in node for n in _numbers(v, key)]
    return []


def test_train_and_certify_take_a_tuple_model(nets, tmp_path):
    out = tmp_path / "trained"
    assert main(["train", "--model", f"{nets}:as_tuple", "--method", "standard", "--epochs", "1", "--data",
                 "mnist-sample:train", "--limit", "64", "--val-limit", "16", "--check-size", "16", "--batch-size",
                 "32", "--out", str(out), "--quiet"]) == 0
    assert (out / "model.safetensors").is_file()
    assert main(["certify", "--model", str(out), "--data", "mnist-sample", "--limit", "2", "--sigma", "0.25",
                 "--n0", "10", "--n", "50", "--out", str(tmp_path / "cert"), "--quiet"]) == 0


def test_an_onnx_model_cannot_be_trained(onnx_file, tmp_path, capsys):
    assert main(["train", "--model", str(onnx_file), "--method", "standard", "--data", "mnist-sample:train",
                 "--limit", "64", "--out", str(tmp_path), "--quiet"]) == 2
    assert "cannot be trained" in capsys.readouterr().err


def test_a_quantized_deployment_shows_in_the_logit_difference(onnx_file, zoo, data, tmp_path):
    quantization = pytest.importorskip("onnxruntime.quantization")
    quantized = tmp_path / "int8.onnx"
    quantization.quantize_dynamic(str(onnx_file), str(quantized), weight_type=quantization.QuantType.QInt8)
    exact = prediction_agreement(load_model(str(onnx_file), device="cpu").module, zoo, data)
    int8 = prediction_agreement(load_model(str(quantized), device="cpu").module, zoo, data)
    assert exact.max_logit_diff < 1e-4 < 1e-2 < int8.max_logit_diff


def test_evaluate_a_deployed_onnx_model_without_gradients(onnx_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["evaluate", "--model", str(onnx_file), "--surrogate", "zoo:mnist-cnn", "--data", "mnist-sample",
                 "--limit", "6", "--eps", "0.3", "--aa-queries", "40", "--out", str(out), "--no-db"]) == 0
    report = json.loads((out / "report.json").read_text())
    names = [s["name"] for s in report["stages"]]
    assert names == ["clean", "agreement", "transfer", "square", "hopskipjump", "per-class"]
    agreement = next(s for s in report["stages"] if s["kind"] == "agreement")["result"]
    assert agreement["rate"] == 1.0 and agreement["max_logit_diff"] < 1e-4  # a faithful float32 export
    assert any("without gradients" in w for w in report["warnings"])
    assert report["summary"]["robust_accuracy"] < report["summary"]["clean_accuracy"]  # transfer breaks points
    assert 'id="agreement"' in (out / "report.html").read_text()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(onnx_file), "--weights", "w.pt", "--data", "mnist-sample",
                 "--limit", "2", "--out", str(tmp_path / "r2"), "--no-db"]) == 2
    assert "needs a --surrogate" in capsys.readouterr().err
