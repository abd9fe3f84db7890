"""`bastion train` end to end on a tiny MLP: outputs, model card, `bastion evaluate --model OUT`, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bastion.cli import main
from bastion.models import load_model

TINY = f"{Path(__file__).with_name('tiny.py')}:mlp"
FAST = ["--data", "mnist-sample:train", "--limit", "128", "--val-limit", "32", "--check-size", "32",
        "--check-steps", "2", "--eval-steps", "2", "--batch-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    code = main(["train", "--model", TINY, "--method", "pgd-at", "--eps", "0.1", "--steps", "2", "--epochs", "2",
                 "--out", str(out), *FAST])
    assert code == 0
    return out


def test_outputs_and_model_card(trained):
    assert {p.name for p in trained.iterdir()} >= {"checkpoint.pt", "model.pt", "model_card.json", "training.html"}
    card = json.loads((trained / "model_card.json").read_text())
    assert {"schema_version", "method", "trainer", "hyperparameters", "model", "data", "metrics", "wall_time_s",
            "history", "warnings", "command", "versions"} <= set(card)
    assert card["method"] == "pgd-at" and card["trainer"] == {"steps": 2, "rel_step": None}
    assert card["model"]["spec"] == TINY and len(card["history"]) == 2
    assert len(card["data"]["fingerprint"]) == 16 and card["data"]["held_out"]["name"] == "mnist-sample:eval"
    assert 0 <= card["metrics"]["pgd_accuracy"] <= card["metrics"]["clean_accuracy"] <= 1
    html = (trained / "training.html").read_text()
    assert html.count("<svg") == 2 and "pgd-at" in html
    state = torch.load(trained / "model.pt", weights_only=True)
    assert set(state) == {"1.weight", "1.bias", "3.weight", "3.bias"}


def test_output_directory_loads_as_a_model(trained):
    loaded = load_model(str(trained), device="cpu")
    state = torch.load(trained / "model.pt", weights_only=True)
    assert torch.equal(loaded.module.state_dict()["1.weight"], state["1.weight"])


def test_evaluate_takes_the_output_directory(trained, tmp_path, capsys):
    code = main(["evaluate", "--model", str(trained), "--data", "mnist-sample", "--limit", "16", "--eps", "0.1",
                 "--steps", "2", "--restarts", "1", "--curve-points", "0", "--out", str(tmp_path), "--quiet"])
    assert code == 0 and (tmp_path / "report.json").is_file()


def test_resume_of_a_finished_run_rewrites_the_same_weights(trained):
    before = torch.load(trained / "model.pt", weights_only=True)
    assert main(["train", "--model", TINY, "--method", "pgd-at", "--eps", "0.1", "--steps", "2", "--epochs", "2",
                 "--out", str(trained), "--resume", *FAST]) == 0
    after = torch.load(trained / "model.pt", weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_distill_from_a_trained_teacher(trained, tmp_path):
    out = tmp_path / "student"
    assert main(["train", "--model", TINY, "--method", "distill", "--teacher", str(trained), "--temperature", "5",
                 "--epochs", "1", "--out", str(out), *FAST]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["trainer"] == {"teacher": "Sequential", "temperature": 5.0} and card["metrics"]["pgd_accuracy"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "nope"], "unknown training method 'nope'"),
    (["--method", "pgd-at"], "needs --eps"),
    (["--method", "pgd-at", "--eps", "0.1", "--beta", "2"], "has no option beta"),
    (["--method", "distill"], "teacher"),
    (["--method", "standard", "--resume"], "no checkpoint"),
    (["--method", "standard", "--epochs", "0"], "epochs must be"),
    (["--method", "standard", "--optimizer", "rmsprop"], "unknown optimizer"),
    (["--method", "standard", "--schedule", "step"], "unknown schedule"),
    (["--method", "standard", "--data", "mnist-sample:eval"], "no held-out data"),
    (["--method", "pgd-at", "--eps", "-1"], "eps must be"),
])
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    fast = [a for a in FAST if a != "mnist-sample:train"]
    fast.remove("--data")
    code = main(["train", "--model", TINY, "--out", str(tmp_path / "o"), "--epochs", "1", *fast, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_safetensors_next_to_model_pt_hold_the_same_weights(trained):
    from bastion.models.tensorfile import read_safetensors

    state = torch.load(trained / "model.pt", weights_only=True)
    tensors = read_safetensors(trained / "model.safetensors")
    assert set(tensors) == set(state) and all(torch.equal(tensors[k], state[k]) for k in state)
    a = load_model(TINY, weights=trained / "model.safetensors", device="cpu").module
    b = load_model(str(trained), device="cpu").module
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(a(x), b(x))
