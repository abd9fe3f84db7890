"""Issue 15, results lost: every output path is checked before the work; machine output alone on stdout."""

import json

import pytest

from bastion.cli import main

from .test_first_hour_errors import _fails

ATTACK = ["attack", "pgd", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "8", "--steps", "2",
          "--quiet"]


@pytest.mark.parametrize(("out", "message"), [
    ("{tmp}", "is a directory: name a file"),
    ("{tmp}/existing.npz", "exists: give --overwrite"),
    ("{tmp}/existing.npz/sub.npz", "is a file, not a directory"),
    ("/proc/x/adv.npz", "cannot be written"),
])
def test_attack_out_checked_before_the_work(tmp_path, capsys, monkeypatch, out, message):
    (tmp_path / "existing.npz").write_bytes(b"earlier results")
    monkeypatch.setattr("bastion.cli.attack._run", lambda *a: pytest.fail("the attack ran before --out was checked"))
    _fails(capsys, [*ATTACK, "--out", out.format(tmp=tmp_path)], message)
    assert (tmp_path / "existing.npz").read_bytes() == b"earlier results"


def test_attack_stdout_is_json_only_and_records_defenses(tmp_path, capsys):
    out = tmp_path / "adv.npz"
    assert main([*ATTACK, "--eps", "0.1", "--defense", "bit-depth:bits=4", "--adaptive", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # `bastion attack ... | jq .`
    assert summary["defense"] == ["bit-depth:bits=4"] and summary["adaptive"] is True
    assert f"wrote {out}" in captured.err and out.is_file()
    assert main([*ATTACK, "--eps", "0.1", "--out", str(out), "--overwrite"]) == 0


def test_cw_unbounded_grid_follows_the_norms_found(capsys):
    argv = ["attack", "cw", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "6", "--norm", "l2",
            "--eps", "max", "--steps", "30", "--binary-search-steps", "1", "--initial-const", "100", "--lr", "0.1",
            "--quiet"]
    assert main(argv) == 0
    profile = json.loads(capsys.readouterr().out)["norm_profile"]
    grid = [point["eps"] for point in profile["curve"]]
    assert profile["found"] >= 1, profile
    assert 0 < grid[-1] < 10 and grid[-1] >= profile["median"]  # not the box bound (28 for MNIST)
    assert profile["curve"][-1]["accuracy"] <= 1 - profile["found"] / profile["attacked"] + 1e-9


def test_what_the_readme_promises_the_help_says(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert out.count("rebuild: ") == 3 and "bastion train" in out
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "--data-root" in out and "--root," not in out
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "dlr" in help_text and "(default 0.3, the MNIST convention" in help_text


def test_attack_progress_counts_points(capsys, monkeypatch):
    monkeypatch.setattr("bastion.cli.attack.sys.stderr.isatty", lambda: True, raising=False)
    argv = [a for a in ATTACK if a != "--quiet"]
    assert main([*argv, "--eps", "0.1", "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "/8 [" in err and "pt/s" in err  # a total of 8 points (not 2 batches of 4)
