"""Issue 26: programs exported with a fixed batch (torch.export without dynamic shapes, static ONNX) run in chunks.

Each is checked against the PyTorch model it came from: the same logits and gradients on a batch
that is not a multiple of the exported one, one warning, and the same numbers end to end.
"""

from __future__ import annotations

import logging

import pytest
import torch

from bastion.cli import main
from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.models import load_model, load_zoo_model

from .test_formats import _accuracies

EVALUATE = ["--data", "mnist-sample", "--limit", "15", "--eps", "0.1", "--curve-points", "0", "--quiet", "--no-db"]
PGD = ["--suite", "pgd", "--steps", "2", "--restarts", "1", "--no-fgsm"]
DEPLOYED = ["--suite", "deployed", "--surrogate", "zoo:mnist-cnn", "--aa-queries", "20"]


@pytest.fixture(scope="module")
def zoo():
    return load_zoo_model("mnist-cnn")


@pytest.fixture(scope="module")
def fixed_program(zoo, tmp_path_factory):
    path = tmp_path_factory.mktemp("fixed") / "batch2.pt2"
    torch.export.save(torch.export.export(zoo, (torch.rand(2, 1, 28, 28),)), path)
    return path


@pytest.fixture(scope="module")
def static_onnx(zoo, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path_factory.mktemp("onnx") / "batch2.onnx"
    torch.onnx.export(zoo, (torch.rand(2, 1, 28, 28),), str(path), input_names=["x"], output_names=["logits"])
    return path


def test_a_fixed_batch_program_gives_the_eager_logits_and_gradients_and_warns_once(fixed_program, zoo, caplog):
    model = load_model(str(fixed_program), device="cpu").module
    x, _ = load_dataset("mnist-sample", limit=7).batch(slice(None))  # 7 = 3 chunks of 2 and one padded
    with caplog.at_level(logging.WARNING):
        with torch.no_grad():
            assert torch.allclose(model(x), zoo(x), atol=1e-5) and torch.allclose(model(x[:2]), zoo(x[:2]), atol=1e-5)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xg)[:, 3].sum(), xg)
    xz = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(zoo(xz)[:, 3].sum(), xz)
    assert torch.allclose(grad, expected, atol=1e-5)
    warnings = [r.getMessage() for r in caplog.records if "fixed batch" in r.getMessage()]
    assert warnings == [f"{fixed_program} was exported for a fixed batch of 2: running it in chunks of 2, the last "
                        "one padded"]


def test_a_fixed_batch_program_still_refuses_other_image_sizes(fixed_program):
    model = load_model(str(fixed_program), device="cpu").module
    with pytest.raises(InputError, match="exported for other input shapes.*dynamic_shapes"):
        model(torch.rand(3, 1, 14, 14))


def test_a_fixed_batch_program_evaluates_with_the_pytorch_numbers(fixed_program, tmp_path):
    assert main(["evaluate", "--model", "zoo:mnist-cnn", *EVALUATE, *PGD, "--out", str(tmp_path / "zoo")]) == 0
    assert main(["evaluate", "--model", str(fixed_program), *EVALUATE, *PGD, "--out", str(tmp_path / "pt2")]) == 0
    assert _accuracies(tmp_path / "pt2") == _accuracies(tmp_path / "zoo")
    assert len(_accuracies(tmp_path / "zoo")) > 10


def test_a_static_batch_onnx_file_evaluates_with_the_pytorch_numbers(static_onnx, zoo, tmp_path, caplog):
    model = load_model(str(static_onnx), device="cpu").module
    x, _ = load_dataset("mnist-sample", limit=5).batch(slice(None))
    with caplog.at_level(logging.WARNING), torch.no_grad():
        assert torch.allclose(model(x), zoo(x), atol=1e-4) and torch.allclose(model(x[:3]), zoo(x[:3]), atol=1e-4)
    assert [r.getMessage() for r in caplog.records if "fixed batch" in r.getMessage()] == [
        f"{static_onnx} was exported for a fixed batch of 2: running it in chunks of 2, the last one padded"]
    assert main(["evaluate", "--model", "zoo:mnist-cnn", *EVALUATE, *DEPLOYED, "--out", str(tmp_path / "zoo")]) == 0
    assert main(["evaluate", "--model", str(static_onnx), *EVALUATE, *DEPLOYED, "--out", str(tmp_path / "onnx")]) == 0
    assert _accuracies(tmp_path / "onnx") == _accuracies(tmp_path / "zoo")
