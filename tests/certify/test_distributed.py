"""`torchrun -m bastion certify` on 2 and 3 gloo processes gives the rows of one process, written once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.cli import main
from bastion.distributed import shard_chunks
from tests.certify.test_cli import NETS
from tests.torchrun import torchrun

ARGS = ["--data", "mnist-sample", "--sigma", "0.25", "--n0", "10", "--samples", "100", "--batch-size", "30",
        "--limit", "13", "--subset-seed", "3", "--no-db", "--quiet"]


def _rows(out: Path) -> list[dict[str, object]]:
    rows = json.loads((out / "certify.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_one_two_and_three_processes_certify_the_same_radii(tmp_path):
    nets = tmp_path / "nets.py"
    nets.write_text(NETS)
    argv = ["certify", "--model", f"{nets}:build", *ARGS]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    one = _rows(tmp_path / "one")
    assert [r["index"] for r in one] == sorted(r["index"] for r in one) and len(one) == 13
    assert any(r["radius"] > 0 for r in one)
    for processes in (2, 3):
        out = tmp_path / f"p{processes}"
        done = torchrun(processes, [*argv, "--out", str(out)], cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert _rows(out) == one  # bit-identical: predictions, radii, p_lower, counts
        assert done.stdout.count("certified accuracy") == 1  # rank 0 alone prints and writes
        report = json.loads((out / "certify.json").read_text())
        assert report["provenance"]["processes"] == processes
        assert sorted(p.name for p in out.iterdir()) == ["certify.html", "certify.json", "certify.tsv"]


def test_a_command_that_does_not_share_its_work_refuses_torchrun_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["detect", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--eps", "0.3"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "bastion detect does not share its work" in lines[0], lines


@pytest.mark.parametrize(("count", "chunk", "size"), [(13, 3, 1), (13, 3, 2), (13, 3, 3), (2, 5, 3), (0, 4, 2)])
def test_chunks_cover_every_position_once(count, chunk, size):
    shards = [shard_chunks(count, chunk, rank, size) for rank in range(size)]
    assert sorted(p for shard in shards for p in shard) == list(range(count))
    assert all(shard == sorted(shard) for shard in shards)


def test_sequential_certificates_are_the_same_on_two_processes(tmp_path):
    nets = tmp_path / "nets.py"
    nets.write_text(NETS)
    argv = ["certify", "--model", f"{nets}:build", "--data", "mnist-sample", "--sigma", "0.25", "--sequential",
            "--radii", "0.1,0.2", "--n0", "10", "--samples", "2000", "--batch-size", "30", "--limit", "9", "--no-db",
            "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    one = _rows(tmp_path / "one")
    assert len({r["samples"] for r in one}) > 1  # the points stopped at different sample sizes
    done = torchrun(2, [*argv, "--out", str(tmp_path / "two")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _rows(tmp_path / "two") == one
