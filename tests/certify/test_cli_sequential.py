"""`bastion certify --sequential` and `--resume`: samples counted per row, certificates unchanged by interruption."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.cli import main

ZOO = ["--model", "zoo:mnist-cnn-noise", "--data", "mnist-sample", "--sigma", "0.5", "--quiet"]


def _report(out):
    return json.loads((Path(out) / "certify.json").read_text())


def _rows(out):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in _report(out)["rows"]]


def test_sequential_decides_the_radii_and_counts_every_sample(tmp_path, capsys):
    out = tmp_path / "seq"
    assert main(["certify", *ZOO, "--limit", "6", "--radii", "0.5,1", "--sequential", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = _report(out)
    assert report["settings"]["procedure"] == "sequential" and report["settings"]["n0"] == 16
    assert report["settings"]["n"] == 30_000 and report["settings"]["decided_radii"] == [0.5, 1.0]
    rows, summary = report["rows"], report["summary"]
    assert all(r["samples"] == 16 + r["n"] and set(r["decisions"]) == {"0.5", "1"} for r in rows)
    assert summary["samples"] == sum(r["samples"] for r in rows)
    assert summary["fixed_samples"] == 6 * 30_100 and summary["saved"] == pytest.approx(6 * 30_100 / summary["samples"])
    assert [p["radius"] for p in summary["certified_accuracy"]] == [0.5, 1.0]
    assert f"{summary['saved']:.1f}x fewer than fixed-n CERTIFY" in printed
    html = (out / "certify.html").read_text()
    assert 'id="certify-samples"' in html and "fewer samples than fixed n" in html
    header = (out / "certify.tsv").read_text().splitlines()[0].split("\t")
    assert "samples" in header and "n" in header


def test_radius_mode_gives_each_point_its_own_sample_size(tmp_path):
    out = tmp_path / "iss"
    assert main(["certify", *ZOO, "--limit", "4", "--sequential", "--n", "5000", "--decline", "0.1",
                 "--out", str(out)]) == 0
    report = _report(out)
    assert report["settings"]["procedure"] == "iss" and report["settings"]["decline"] == 0.1
    assert all(100 <= r["n"] <= 5000 and r["samples"] in (100 + r["n"], 2100 + r["n"]) and r["p_lower"] > 0
               for r in report["rows"])
    assert report["summary"]["samples"] < 4 * 5100


@pytest.mark.parametrize(("extra", "message"), [
    (["--decline", "0.1"], "--decline sets the radius loss of --sequential without --radii"),
    (["--sequential", "--radii", "0.5", "--decline", "0.1"], "--decline sets the radius loss"),
    (["--sequential", "--radii", "0.5", "--randomized"], "randomized Clopper-Pearson bound applies to fixed-n"),
    (["--sequential", "--decline", "0"], "decline must be a number > 0"),
])
def test_settings_that_do_not_fit_the_procedure_are_one_line(capsys, extra, message):
    code = main(["certify", *ZOO, "--limit", "2", "--out", "unused", *extra])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines


def test_the_randomized_bound_is_seeded_and_never_below_the_plain_one(tmp_path):
    argv = ["certify", *ZOO, "--limit", "4", "--n0", "20", "--n", "300", "--seed", "5"]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert main([*argv, "--randomized", "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--randomized", "--out", str(tmp_path / "b")]) == 0
    plain, a, b = (_report(tmp_path / d) for d in ("plain", "a", "b"))
    assert a["settings"]["randomized"] is True and _rows(tmp_path / "a") == _rows(tmp_path / "b")
    assert all(r["p_lower"] >= p["p_lower"] for r, p in zip(a["rows"], plain["rows"], strict=True))
    assert any(r["p_lower"] > p["p_lower"] for r, p in zip(a["rows"], plain["rows"], strict=True))


def test_an_earlier_run_is_never_replaced_silently(tmp_path, capsys):
    argv = ["certify", *ZOO, "--limit", "2", "--n0", "10", "--n", "50", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    before = (tmp_path / "run" / "certify.json").read_text()
    capsys.readouterr()
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0 and "is finished" in capsys.readouterr().out
    assert (tmp_path / "run" / "certify.json").read_text() == before
    assert main([*argv, "--n", "60", "--overwrite"]) == 0 and _report(tmp_path / "run")["settings"]["n"] == 60


def test_a_run_killed_mid_way_resumes_to_the_same_certificates(tmp_path):
    """SIGKILL after the first saved group; --resume keeps the saved groups and writes the same certify.json rows."""
    argv = ["certify", *ZOO, "--limit", "12", "--n0", "100", "--n", "1000", "--batch-size", "400", "--seed", "3"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bastion", *argv, "--out", str(out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out / "certify.partial.0.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 5:  # the header and a group of 4
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = len(partial.read_text().splitlines()) - 1
    assert 4 <= saved < 12 and not (out / "certify.json").exists()
    assert main([*argv, "--out", str(out)]) == 2  # an interrupted run is not started over silently
    assert main([*argv, "--n", "900", "--resume", "--out", str(out)]) == 2  # nor resumed with other settings
    assert main([*argv, "--resume", "--out", str(out)]) == 0
    assert _rows(out) == _rows(tmp_path / "whole")
    assert not list(out.glob("certify.partial.*"))


def test_evaluate_certifies_sequentially_at_the_threat_radius(tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", "zoo:mnist-cnn-noise", "--data", "mnist-sample", "--limit", "4",
                 "--norm", "linf", "--eps", "0.02", "--suite", "pgd", "--steps", "2", "--curve-points", "0",
                 "--certify", "--sequential",
                 "--sigma", "0.5", "--quiet", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["name"] == "certify")
    section = stage["result"]
    assert section["settings"]["procedure"] == "sequential" and section["threat_radius"] == pytest.approx(0.56)
    assert section["threat_radius"] in section["settings"]["decided_radii"]
    assert all(len(r["decisions"]) == 6 and r["samples"] == 16 + r["n"] for r in section["rows"])
    assert section["summary"]["samples"] == sum(r["samples"] for r in section["rows"])
    assert "fewer than fixed n" in stage["headline"]
