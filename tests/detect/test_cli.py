"""`bastion detect`: prints the table, writes detection.json and .html, refuses bad input with exit 2."""

import json

import pytest

from bastion.cli import main

FAST = ["--model", "zoo:mnist-cnn", "--data", "mnist-sample:eval", "--limit", "40", "--calibration",
        "mnist-sample:train", "--calibration-limit", "60", "--steps", "3", "--adaptive-steps", "3",
        "--adaptive-limit", "6", "--quiet"]


def test_detect_prints_the_table_and_writes_json(tmp_path, capsys):
    assert main(["detect", *FAST, "--fpr", "0.1", "--attack", "pgd", "--attack", "fgsm", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "detection at 10.0% false positives" in out
    for name in ("feature-squeezing", "confidence", "entropy", "margin", "pgd detected", "fgsm detected",
                 "adaptive evades"):
        assert name in out
    report = json.loads((tmp_path / "detection.json").read_text())
    section = report["detection"]
    assert section["settings"]["n_calibration"] == 60 and section["settings"]["attacks"] == ["pgd", "fgsm"]
    assert all(d["calibration_fpr"] <= 0.1 for d in section["detectors"].values())
    assert "<table>" in (tmp_path / "detection.html").read_text()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fpr", "1.5"], "--fpr must lie strictly between 0 and 1"),
        (["--detectors", "oracle"], "unknown detector 'oracle'"),
        (["--attack", "nope"], "unknown attack 'nope'"),
        (["--squeezers", "blur:3"], "unknown squeezer"),
        (["--calibration-limit", "5"], "needs at least 19 clean points"),
        (["--eps", "-1"], "eps must be a finite number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    assert main(["detect", *FAST, "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "detection.json").exists()


def test_model_and_data_are_required(capsys):
    assert main(["detect", "--data", "mnist-sample"]) == 2
    assert "--model is required" in capsys.readouterr().err
