"""`bastion patch` and `bastion corruptions`: files written, sizes as asked, user errors exit 2."""

import json

from PIL import Image

from bastion.cli import main


def test_patch_command_writes_a_png_of_the_requested_size(tmp_path, capsys):
    out = tmp_path / "patch"
    code = main(["patch", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "24", "--size", "0.2",
                 "--steps", "3", "--train-batch", "8", "--target", "3", "--png-size", "123", "--out", str(out)])
    assert code == 0
    with Image.open(out / "patch.png") as image:
        assert image.size == (123, 123)
    summary = json.loads((out / "patch.json").read_text())
    assert summary["n_train"] == 12 and summary["n_eval"] == 12 and summary["target"] == 3
    assert 0 <= summary["success_rate"] <= 1 and abs(summary["area"] - 0.2) < 0.03
    assert "success rate" in capsys.readouterr().out


def test_patch_command_rejects_bad_input(tmp_path, capsys):
    base = ["patch", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "4", "--out", str(tmp_path)]
    assert main([*base, "--size", "2"]) == 2
    assert main([*base, "--target", "10"]) == 2
    assert main([*base, "--png-size", "0"]) == 2
    assert "error" in capsys.readouterr().err


def test_corruptions_command_prints_the_table_and_the_mce(tmp_path, capsys):
    code = main(["corruptions", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "16",
                 "--corruptions", "contrast,pixelate", "--severities", "1,5", "--baseline-model", "zoo:mnist-cnn",
                 "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "corruptions.json").read_text())
    assert set(report["accuracy"]) == {"contrast", "pixelate"} and report["severities"] == [1, 5]
    assert report["baseline"]["mce"] is None or abs(report["baseline"]["mce"] - 1.0) < 1e-9
    out = capsys.readouterr().out
    assert "contrast" in out and "mCE" in out
    assert main(["corruptions", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "4",
                 "--corruptions", "fog", "--out", str(tmp_path)]) == 2


def test_spatial_command_reports_each_method_and_the_worst_case(tmp_path, capsys):
    code = main(["spatial", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "12", "--angles", "5",
                 "--translations", "3", "--steps", "3", "--out", str(tmp_path)])
    assert code == 0
    accuracy = json.loads((tmp_path / "spatial.json").read_text())["accuracy"]
    assert accuracy["worst case"] <= min(accuracy["grid"], accuracy["first-order"]) <= accuracy["clean"]
    assert "worst case" in capsys.readouterr().out
    assert main(["spatial", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "2",
                 "--max-angle", "-5", "--out", str(tmp_path)]) == 2
