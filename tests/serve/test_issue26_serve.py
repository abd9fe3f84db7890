"""Issue 26: serve's flags say what they need, its help lists the models the others list, its example request works."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from starlette.testclient import TestClient

from bastion.cli import _parser, main
from bastion.cli.common import MODEL_FORMS
from bastion.cli.evaluate import build_parser
from bastion.cli.serve import _overrides
from bastion.errors import InputError
from bastion.serve import DriftMonitor, create_app, load_config
from bastion.serve.config import SecuritySettings

EXAMPLE = Path(__file__).parents[2] / "examples" / "request.json"


def _fails(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    return lines[0]


def _subparser(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def _help(name: str, flag: str) -> str:
    return next(a.help for a in _subparser(name)._actions if flag in a.option_strings)


def test_calibration_limit_too_small_for_the_drift_monitor_names_the_flag(capsys):
    line = _fails(capsys, ["serve", "--calibration-limit", "100", "--check"], "--calibration-limit")
    assert "at least 400" in line and "--drift-window 200" in line
    line = _fails(capsys, ["serve", "--calibration-limit", "100", "--drift-window", "60", "--check"], "at least 120")
    assert load_config(None, {"guard": {"calibration_limit": 120}, "monitor": {"drift_window": 60}})


def test_too_few_calibration_images_for_the_drift_window_names_the_flags():
    with pytest.raises(InputError, match=r"at least 60 calibration images \(2 x --drift-window 30\), got 50.*"
                                         r"--calibration-limit"):
        DriftMonitor({"confidence": torch.rand(50)}, window=30, run_length=1000)


def test_serve_help_lists_the_model_forms_of_the_other_commands():
    evaluate = next(a.help for a in build_parser()._actions if "--model" in a.option_strings)
    assert MODEL_FORMS in _help("serve", "--model") and MODEL_FORMS in evaluate
    for form in (".pt2", ".onnx", "hf:", "bastion train output folder"):
        assert form in _help("serve", "--model")


def test_burst_is_in_the_help_and_reaches_the_rate_limiter():
    assert f"({SecuritySettings().burst})" in _help("serve", "--burst")
    assert "--burst" in _help("serve", "--rate-limit")
    args = _subparser("serve").parse_args(["--rate-limit", "5", "--burst", "7"])
    security = load_config(None, _overrides(args)).security
    assert (security.rate_per_second, security.burst) == (5.0, 7)
    assert load_config(None, _overrides(_subparser("serve").parse_args([]))).security.burst == 100


def test_the_example_request_is_answered_with_its_digit(make_server):
    server = make_server()
    document = json.loads(EXAMPLE.read_text())
    digit = int(document["id"].rsplit("-", 1)[1])
    with TestClient(create_app(server)) as client:
        response = client.post(f"/v2/models/{server.name}/infer", content=EXAMPLE.read_bytes())
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["label"] == [digit] and outputs["outcome"] == ["accept"]


def test_check_refuses_eps_beyond_the_input_range(capsys, monkeypatch):
    monkeypatch.setattr("bastion.serve.build_server", lambda *a, **k: pytest.fail("the guard was calibrated"))
    _fails(capsys, ["serve", "--check", "--eps", "8"], "did you mean 8/255?")
    _fails(capsys, ["serve", "--check", "--eps", "0"], "--eps 0 allows no perturbation")
