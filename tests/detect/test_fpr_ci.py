"""Issue 15: `bastion detect` reports the held-out false-positive rate with its interval and flags a missed target."""

import json

import pytest

from bastion.cli import main
from bastion.cli.detect import format_table
from bastion.detect.rates import fpr_check, fpr_warnings

from .test_cli import FAST


def test_interval_and_miss():
    missed = fpr_check(37, 500, 0.05)  # 7.4% on 500 held-out points: the case
    low, high = missed["ci"]
    assert missed["missed"] and missed["above"] and low < 0.074 < high and low > 0.05
    assert low == pytest.approx(0.0527, abs=5e-4) and high == pytest.approx(0.1008, abs=5e-4)
    within = fpr_check(27, 500, 0.05)  # 5.4%: above the target, within sampling error
    assert within["above"] and not within["missed"]
    assert fpr_check(0, 100, 0.05)["ci"][0] == 0.0 and fpr_check(0, 0, 0.05)["rate"] is None


def _section(k: int, n: int) -> dict:
    entry = {"threshold": 0.5, "clean_fpr": k / n, "n_clean": n, "clean_fpr_check": fpr_check(k, n, 0.05),
             "attacks": {"pgd": {"rate": 0.9, "n_success": 10}}}
    return {"settings": {"attacks": ["pgd"], "adaptive_steps": 0, "fpr": 0.05, "n_calibration": 500,
                         "calibration": "x", "n_held_out": n, "threat": "linf eps=0.3"},
            "detectors": {"margin": entry}, "warnings": []}


def test_terminal_and_warning_flag_the_miss():
    section = _section(37, 500)
    section["warnings"] += fpr_warnings(section)
    table = format_table(section)
    assert "7.4% [5.3%-10.1%] MISSED" in table
    assert "warning: margin: held-out false-positive rate 7.4% (95% CI 5.3%-10.1%, 500 clean points) misses the " \
           "5.0% target" in table
    assert fpr_warnings(_section(27, 500)) == [] and "above" in format_table(_section(27, 500))


def test_detect_json_records_the_interval(tmp_path, capsys):
    assert main(["detect", *FAST, "--fpr", "0.1", "--adaptive-steps", "0", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "detection.json").read_text())
    for entry in report["detection"]["detectors"].values():
        check = entry["clean_fpr_check"]
        assert check["target"] == 0.1 and check["ci"][0] <= entry["clean_fpr"] <= check["ci"][1]
    assert "held-out FPR [95% CI]" in capsys.readouterr().out
