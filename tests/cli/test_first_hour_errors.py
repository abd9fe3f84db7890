"""Issue 15, tracebacks: each mistake a new user made gets one line and exit 2, with what to do instead."""

import numpy as np
import pytest
import torch
from torch import nn

from bastion.cli import main

NETS = '''
from torch import nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

def boom():
    raise RuntimeError("no GPU here")

def needs(width):
    return build()
'''


def _fails(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bastion: error:"), err
    assert "Traceback" not in err and "\x1b[" not in err
    assert message in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def nets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NETS)
    (tmp_path / "broken.py").write_text("def f(:\n")
    return tmp_path


def _attack(*extra):
    return ["attack", "pgd", "--data", "mnist-sample", "--limit", "4", "--steps", "1", "--quiet", *extra]


def test_weights_that_are_text_or_empty(nets, capsys):
    (nets / "text.pt").write_text("hello\n")
    (nets / "empty.pt").write_bytes(b"")
    _fails(capsys, _attack("--model", "nets.py:build", "--weights", "text.pt"), "not a file written by torch.save")
    _fails(capsys, _attack("--model", "nets.py:build", "--weights", "empty.pt"), "the file is empty")


def test_pickled_module_says_what_to_do(nets, capsys):
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), nets / "full.pt")
    line = _fails(capsys, _attack("--model", "nets.py:build", "--weights", "full.pt"), "whole pickled model")
    assert "state_dict()" in line and "torch.export" in line and "weights_only=False" not in line


@pytest.mark.parametrize(("spec", "message"), [
    ("nets.py:boom", "the factory nets.py:boom failed: RuntimeError: no GPU here"),
    ("nets.py:needs", "must build the model without arguments"),
    ("broken.py:f", "cannot import broken.py: syntax error at line 1"),
])
def test_factory_failures(nets, capsys, spec, message):
    _fails(capsys, _attack("--model", spec), message)


def test_module_in_the_current_directory_is_found(nets, capsys):
    assert main(_attack("--model", "nets:build", "--eps", "0.1")) == 0


def test_negative_labels(tmp_path, capsys):
    np.savez(tmp_path / "neg.npz", x=np.zeros((5, 1, 28, 28), np.float32), y=-np.ones(5, np.int64))
    _fails(capsys, _attack("--model", "zoo:mnist-cnn", "--data", f"npz:{tmp_path / 'neg.npz'}"),
           "5 of 5 are negative")
