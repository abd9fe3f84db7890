"""`bastion certify`: writes TSV, JSON and HTML; every user mistake is one line."""

import json

import pytest

from bastion.cli import main

NETS = '''
import torch
from torch import nn

def build():
    layer = nn.Linear(784, 10)
    generator = torch.Generator().manual_seed(0)  # the same weights in every run
    with torch.no_grad():
        layer.weight.copy_(0.05 * torch.randn(10, 784, generator=generator))
        layer.bias.zero_()
    return nn.Sequential(nn.Flatten(), layer)
'''


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return f"{path}:build"


def _fails(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("bastion: error:"), err
    assert message in lines[0], lines[0]


def test_certify_writes_tsv_json_and_html(tmp_path, capsys, nets):
    out = tmp_path / "run"
    code = main(["certify", "--model", nets, "--data", "mnist-sample", "--sigma", "0.25", "--n0", "20", "--n", "200",
                 "--limit", "5", "--subset-seed", "1", "--batch-size", "100", "--radii", "0,0.25", "--out", str(out),
                 "--quiet"])
    assert code == 0
    assert "certified accuracy" in capsys.readouterr().out
    report = json.loads((out / "certify.json").read_text())
    assert report["settings"]["sigma"] == 0.25 and report["settings"]["n"] == 200
    assert [p["radius"] for p in report["summary"]["certified_accuracy"]] == [0.0, 0.25]
    assert len(report["rows"]) == 5 and report["provenance"]["data"]["spec"] == "mnist-sample:eval"
    lines = (out / "certify.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:6] == ["index", "label", "prediction", "radius", "correct", "p_lower"]
    assert [int(line.split("\t")[0]) for line in lines[1:]] == [r["index"] for r in report["rows"]]
    assert sorted(r["index"] for r in report["rows"]) == [r["index"] for r in report["rows"]]
    assert 'id="certified-curve"' in (out / "certify.html").read_text()
    # A row depends only on its image, the seed and the batch size: not on the other images certified.
    argv = ["certify", "--model", nets, "--data", "mnist-sample", "--sigma", "0.25", "--n0", "20", "--n", "200",
            "--batch-size", "100", "--quiet"]
    main([*argv, "--limit", "5", "--out", str(tmp_path / "five")])
    main([*argv, "--limit", "3", "--out", str(tmp_path / "three")])
    five, three = (json.loads((tmp_path / d / "certify.json").read_text())["rows"] for d in ("five", "three"))
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in five[:3]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in three]


@pytest.mark.parametrize(("extra", "message"), [
    (["--sigma", "0"], "--sigma must be > 0"),
    (["--sigma", "-1"], "--sigma must be > 0"),
    (["--n0", "0"], "n0 must be an integer >= 1"),
    (["--n", "0"], "n must be an integer >= 1"),
    (["--alpha", "1.5"], "alpha must lie in (0, 1)"),
    (["--alpha", "0"], "alpha must lie in (0, 1)"),
    (["--radii", "x"], "radii must be"),
    (["--limit", "0"], "--limit must lie in"),
])
def test_bad_settings_are_one_line(capsys, nets, extra, message):
    _fails(capsys, ["certify", "--model", nets, "--data", "mnist-sample", "--n", "10", "--quiet", *extra], message)


def test_missing_inputs_are_one_line(tmp_path, capsys, nets):
    _fails(capsys, ["certify", "--data", "mnist-sample"], "--model is required")
    _fails(capsys, ["certify", "--model", nets], "--data is required")
    _fails(capsys, ["certify", "--model", str(tmp_path / "nope.py:build"), "--data", "mnist-sample"],
           "model file not found")
    _fails(capsys, ["certify", "--model", nets, "--data", f"npz:{tmp_path / 'nope.npz'}"], "data file not found")
