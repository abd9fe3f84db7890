"""Every fenced shell example of the README runs (with a small --limit), so the README cannot drift from the code.

Each `bastion ...` line of a ```sh block is run in order, in one temporary folder holding the files the
examples name (mypkg/nets.py, ckpt.pt, test.npz, robustness.toml, eval.toml). Speed options are appended
(argparse keeps the last value). Placeholders are filled in: RUN_A and RUN_B with two recorded runs, and
the CI folder /shared/ with a local one; a line with `...` is an elision, not a command. The few commands
that need the network, the user's own files or a running server are listed in SKIP with the reason.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.cli import main
from bastion.data import load_dataset
from bastion.history import RunStore
from bastion.models.tensorfile import save_safetensors

pytestmark = pytest.mark.slow

README = Path(__file__).parents[1] / "README.md"
EVALUATE = ["--limit", "8", "--steps", "2", "--restarts", "1", "--curve-points", "2", "--aa-steps", "2",
            "--aa-queries", "10", "--gallery", "1", "--n0", "8", "--n", "32", "--eot-samples", "2", "--quiet"]
FAST: dict[str, list[str]] = {
    "evaluate": EVALUATE,
    "attack": ["--limit", "8", "--steps", "2", "--quiet"],
    "attack cw": ["--limit", "4", "--steps", "10", "--binary-search-steps", "1", "--quiet"],
    "universal": ["--limit", "32", "--eval-limit", "16", "--epochs", "1"],
    "patch": ["--limit", "32", "--eval-limit", "8", "--steps", "2", "--placements", "1", "--png-size", "28"],
    "spatial": ["--limit", "4", "--angles", "3", "--translations", "2", "--steps", "2"],
    "corruptions": ["--limit", "8", "--severities", "1", "--corruptions", "gaussian-noise,jpeg"],
    "detect": ["--limit", "40", "--calibration-limit", "40", "--steps", "2", "--adaptive-steps", "2",
               "--adaptive-limit", "4", "--quiet"],
    "certify": ["--limit", "2", "--n0", "8", "--n", "32", "--quiet"],
    "train": ["--limit", "64", "--epochs", "1", "--steps", "1", "--check-size", "16", "--val-limit", "16",
              "--eval-steps", "1", "--quiet"],
}
MAY_GATE = ("--baseline", "compare")  # exit 1 is the documented answer to a regression
SKIP = {  # a piece of a command -> why the test cannot run it here (each piece must still match a command)
    "hf:": "downloads from the Hugging Face hub, or reads the user's own save_pretrained folder",
    "deployed.onnx": "needs the user's deployed .onnx export",
    "bastion serve": "a long-running server (tests/serve runs it)",
    "bastion requests": "reads the request log of a running server",
}

NETS = '''
from torch import nn


class Net(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))


def build() -> nn.Module:
    return Net()
'''


def readme_commands() -> list[str]:
    """The `bastion` command lines of the README's ```sh blocks, continuation lines joined, comments cut."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("bastion ") and "..." not in line:
                commands.append(line)
    return commands


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The files the examples name, in the current folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text(NETS)
    sys.modules.pop("mypkg", None), sys.modules.pop("mypkg.nets", None)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    torch.save(net.state_dict(), "ckpt.pt")
    save_safetensors(net.state_dict(), "model.safetensors")
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(net, (torch.zeros(2, 3, 8, 8),), dynamic_shapes=({0: batch},)),
                      "exported.pt2")
    images = load_dataset("mnist-sample", limit=16).images[:, :, ::3, ::3][:, :, :8, :8].repeat(1, 3, 1, 1)
    np.savez("test.npz", x=images.numpy(), y=np.arange(16) % 10)
    (tmp_path / "robustness.toml").write_text('model = "zoo:mnist-cnn"\ndata = "mnist-sample"\neps = "0.1"\n'
                                               'out = "runs/toml"\n')
    (tmp_path / "eval.toml").write_text('model = "mypkg.nets:Net"\nweights = "ckpt.pt"\ndata = "npz:test.npz"\n'
                                        'eps = "8/255"\nout = "runs/ci"\n')
    yield tmp_path
    sys.modules.pop("mypkg", None), sys.modules.pop("mypkg.nets", None)


def _argv(command: str) -> list[str]:
    argv = shlex.split(command.replace("/shared/", "shared/"))[1:]
    if "RUN_A" in argv:
        runs = RunStore("runs/bastion.db").runs(model="zoo:mnist-cnn", kind="evaluate", threat="linf eps=0.3")
        argv[argv.index("RUN_A")], argv[argv.index("RUN_B")] = runs[0].run_id, runs[-1].run_id
    if "--help" in argv:
        return argv
    fast = FAST.get(" ".join(argv[:2]), FAST.get(argv[0], []))
    return [*argv, *fast]


def test_readme_has_examples():
    commands = readme_commands()
    assert len(commands) >= 25 and all("|" not in c for c in commands), commands
    assert any(c.startswith("bastion list models") for c in commands)
    assert all(any(piece in c for c in commands) for piece in SKIP), "a skip names no README command any more"


def test_every_readme_command_runs(folder, capsys):
    for command in readme_commands():
        if any(piece in command for piece in SKIP):
            continue
        argv = _argv(command)
        try:
            code = main(argv)
        except SystemExit as stop:  # --help
            code = int(stop.code or 0)
        err = capsys.readouterr().err
        allowed = (0, 1) if any(flag in argv for flag in MAY_GATE) else (0,)
        assert code in allowed, f"{command}\n-> exit {code}: {err[-2000:]}"
