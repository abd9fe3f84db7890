import json

from bastion.cli import main
from bastion.evaluate.report_schema import stage_result
from tests.certify.test_cli import NETS


def test_evaluate_with_certify(tmp_path, capsys):
    nets = tmp_path / "nets.py"
    nets.write_text(NETS)
    out = tmp_path / "run"
    code = main(["evaluate", "--model", f"{nets}:build", "--data", "mnist-sample", "--norm", "l2", "--eps", "0.5",
                 "--suite", "pgd", "--steps", "2", "--restarts", "1", "--curve-points", "0", "--limit", "6",
                 "--certify", "--sigma", "0.25", "--n0", "20", "--n", "200", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    cert = stage_result(report, "certify")
    assert cert["settings"]["n"] == 200 and len(cert["rows"]) == 6
    what = [c["what"] for c in cert["comparison"]]
    assert any("SmoothAdv" in w for w in what) and any("base model: empirical" in w for w in what)
    html = (out / "report.html").read_text()
    assert 'id="certified"' in html and 'id="certified-curve"' in html
    assert report["config"]["certify"] is True and report["config"]["sigma"] == 0.25


def test_evaluate_certify_bad_sigma_is_one_line(tmp_path, capsys):
    code = main(["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--certify", "--sigma", "0",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sigma must be > 0" in err[0]
