"""The command line: the main jobs work, and every user mistake gets one line and a non-zero exit."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bastion.cli import main
from bastion.evaluate.report_schema import attack_rows

NETS = '''
import torch
from torch import nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

class _NaN(nn.Module):
    def forward(self, x):
        return torch.full((x.shape[0], 10), float("nan"))

def nan_model():
    return _NaN()

def small_input():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
'''

FAST = ["--steps", "2", "--restarts", "1", "--curve-points", "3", "--limit", "40", "--quiet", "--aa-steps", "5",
        "--aa-queries", "50"]


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


def _fails(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bastion: error:"), err
    assert "Traceback" not in err
    assert message in lines[0], lines[0]


def test_evaluate_writes_json_and_html(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "0.3", "--out", str(out),
                 "--suite", "autoattack", *FAST])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["n_samples"] == 40 and report["summary"]["eps"] == 0.3
    assert attack_rows(report)[1]["settings"]["steps"] == 2
    assert [a["name"] for a in attack_rows(report)] == ["fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "square"]
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "robust accuracy" in capsys.readouterr().out


def test_config_file_and_flags_override(tmp_path):
    config = tmp_path / "robustness.toml"
    config.write_text('[evaluate]\nmodel = "zoo:mnist-cnn"\ndata = "mnist-sample"\nnorm = "l2"\neps = "3/2"\n'
                      'steps = 2\nrestarts = 1\ncurve_points = 0\nlimit = 20\nsuite = "pgd"\n')
    out = tmp_path / "run"
    assert main(["evaluate", "--config", str(config), "--eps", "1", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["norm"] == "l2" and summary["eps"] == 1.0 and summary["n_samples"] == 20


def test_attack_command_writes_npz(tmp_path, capsys):
    out = tmp_path / "adv.npz"
    code = main(["attack", "pgd", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "0.3",
                 "--steps", "5", "--limit", "16", "--out", str(out), "--quiet"])
    assert code == 0
    arrays = np.load(out)
    assert arrays["x"].shape == (16, 1, 28, 28)  # the key --data npz:FILE reads
    assert np.abs(arrays["x"].max()) <= 1 and arrays["norm"].max() <= 0.3 + 1e-6
    assert json.loads(str(arrays["summary"]))["settings"]["steps"] == 5


def test_targeted_attack_from_cli(tmp_path, capsys):
    code = main(["attack", "pgd", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "0.4",
                 "--steps", "10", "--limit", "8", "--target", "3", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["targeted"] == "3" and summary["success_rate"] > 0.5


def test_list_attacks(capsys):
    assert main(["list", "attacks"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"fgsm", "pgd"} <= set(names)


def test_missing_weights_file(nets, capsys):
    _fails(capsys, ["evaluate", "--model", f"{nets}:build", "--weights", "nowhere.pt", "--data", "mnist-sample"],
           "weights file not found")


def test_unknown_factory(nets, capsys):
    _fails(capsys, ["evaluate", "--model", f"{nets}:nope", "--data", "mnist-sample"], "unknown factory")


def test_weights_that_do_not_fit(nets, tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 10)).state_dict(), weights)
    _fails(capsys, ["evaluate", "--model", f"{nets}:build", "--weights", str(weights), "--data", "mnist-sample"],
           "do not fit")


def test_data_the_model_rejects(nets, capsys):
    _fails(capsys, ["evaluate", "--model", f"{nets}:small_input", "--data", "mnist-sample", *FAST],
           "rejected data of shape (1, 28, 28)")


def test_data_outside_unit_range(nets, tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.full((4, 1, 28, 28), 255.0, dtype=np.float32), y=np.zeros(4, dtype=np.int64))
    _fails(capsys, ["evaluate", "--model", f"{nets}:build", "--data", f"npz:{path}"], "[0, 1]")


@pytest.mark.parametrize("eps", ["-0.1", "nan"])
def test_bad_eps(eps, capsys):
    _fails(capsys, ["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", f"--eps={eps}"], "eps")


def test_unknown_attack(capsys):
    _fails(capsys, ["attack", "pgdx", "--model", "zoo:mnist-cnn", "--data", "mnist-sample"], "unknown attack")


def test_model_returning_nan(nets, capsys):
    _fails(capsys, ["evaluate", "--model", f"{nets}:nan_model", "--data", "mnist-sample", *FAST], "NaN")


def test_unknown_config_key(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('model = "zoo:mnist-cnn"\ndata = "mnist-sample"\nepss = 0.3\n')
    _fails(capsys, ["evaluate", "--config", str(config)], "unknown option(s) epss")


def test_console_script_prints_no_traceback(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "bastion", "evaluate", "--model", "zoo:mnist-cnn", "--data", "npz:missing.npz"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("bastion: error:") and "Traceback" not in run.stderr


def test_attack_command_rejects_data_the_model_rejects(nets, capsys):
    _fails(capsys, ["attack", "fgsm", "--model", f"{nets}:small_input", "--data", "mnist-sample", "--limit", "4"],
           "rejected data")


def test_attack_command_counts_clean_errors_as_broken(tmp_path, capsys):
    out = tmp_path / "adv.npz"
    assert main(["attack", "fgsm", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "1e-6",
                 "--limit", "300", "--out", str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    arrays = np.load(out)
    assert summary["robust_accuracy"] == summary["clean_accuracy"]  # eps = 1e-6 changes no prediction here
    assert np.array_equal(arrays["success"], arrays["clean_prediction"] != arrays["y"])


def test_list_trainers_and_models(capsys):
    assert main(["list", "trainers"]) == 0
    assert {"pgd-at", "trades", "fgsm-rs"} <= {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert main(["list", "models"]) == 0
    assert "zoo:mnist-cnn-at" in capsys.readouterr().out
