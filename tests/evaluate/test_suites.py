"""Suites as data: their stages, random streams, settings from flags and TOML, resume after a change."""

from __future__ import annotations

import json

import pytest
import torch

from bastion.cli import main
from bastion.data import ImageSet
from bastion.defenses import Ensemble
from bastion.errors import InputError
from bastion.evaluate import SUITES, EvalConfig, EvalResult, Runner, evaluate_model, plan, read_toml
from bastion.evaluate.context import EvalContext, stream_seed
from bastion.evaluate.stages import AttackStage, CleanStage, CurveStage
from bastion.threat import ThreatModel
from tests.conftest import TinyCNN


def _everything(suite: str) -> EvalConfig:
    return EvalConfig.build(model="m", data="d", suite=suite, min_norm="fab", certify=True, detect=True)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_no_two_stages_of_a_suite_share_a_name_or_a_random_stream(suite):
    torch.manual_seed(0)
    ensemble = Ensemble([TinyCNN(), TinyCNN()], names=["a", "b"])
    stages = plan(_everything(suite), ensemble)
    names = [s.name for s in stages]
    assert len(set(names)) == len(names)
    for seed in (0, 1, 12345):
        seeds = [stream_seed(seed, name) for name in names]
        assert len(set(seeds)) == len(seeds)
    # streams of one run differ across seeds too, and parts of one stage get streams of their own
    assert stream_seed(0, "pgd") != stream_seed(1, "pgd") and stream_seed(0, "checks", "a") != stream_seed(0, "checks")


def test_the_autoattack_suite_runs_each_member_as_a_stage_of_its_own():
    names = [s.name for s in plan(EvalConfig.build(model="m", data="d", suite="autoattack", aa_version="standard"))]
    assert names == ["clean", "fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "square", "checks", "escalation", "curve",
                     "per-class"]
    names = [s.name for s in plan(EvalConfig.build(model="m", data="d", suite="pgd", fgsm=False))]
    assert names[:2] == ["clean", "pgd"]


def test_the_fast_suite_runs_apgd_fast_in_place_of_pgd_and_autoattack_and_is_the_default():
    names = [s.name for s in plan(EvalConfig.build(model="m", data="d"))]
    assert names == ["clean", "probes", "fgsm", "apgd-fast", "checks", "escalation", "audit", "curve", "per-class"]
    assert EvalConfig.build(model="m", data="d").suite == "fast"
    fast = {s.name: s for s in plan(EvalConfig.build(model="m", data="d", aa_steps=7))}
    assert fast["apgd-fast"].settings.params == {"steps": 7, "target_steps": 7}  # AutoAttack's iterations
    assert fast["audit"].settings.steps == 7
    model, data = _toy()
    config = EvalConfig.build(model="m", data="d", suite="fast", eps=0.05, curve_points=0, steps=2, aa_steps=3,
                              aa_queries=20, stages={"apgd-fast": {"steps": 5, "target_steps": 5, "n_targets": 1}})
    result = evaluate_model(model, data, config).to_dict()
    attacks = [s for s in result["stages"] if s["name"] == "apgd-fast"]
    assert len(attacks) == 1 and 0.0 <= result["summary"]["robust_accuracy"] <= 1.0


def test_flat_options_map_onto_the_stage_that_owns_them():
    stages = {s.name: s for s in plan(EvalConfig.build(model="m", data="d", suite="autoattack", steps=7, restarts=3,
                                                       curve_points=3, aa_steps=11, probe_points=9, class_floor=0.4,
                                                       eps=0.2))}
    assert stages["pgd"].settings.params == {"steps": 7, "n_restarts": 3, "loss": "ce"}
    assert stages["apgd-t"].settings.params["steps"] == 11
    assert stages["checks"].settings.probe_points == 9
    assert stages["curve"].settings.grid == pytest.approx([0.0, 0.2, 0.4])
    assert stages["per-class"].settings.floor == 0.4


def test_toml_stage_tables_set_any_stage_setting(tmp_path):
    path = tmp_path / "eval.toml"
    path.write_text('[evaluate]\nmodel = "zoo:mnist-cnn"\ndata = "mnist-sample"\nsteps = 5\nsuite = "pgd"\n\n'
                    '[stages.pgd]\nsteps = 40\nrole = "long PGD"\n\n[stages.curve]\nrestarts = 2\n')
    stages = {s.name: s for s in plan(EvalConfig.from_options(read_toml(path)))}
    assert stages["pgd"].settings.params["steps"] == 40 and stages["pgd"].settings.role == "long PGD"
    assert stages["fgsm"].settings.params == {"loss": "ce"} and stages["curve"].settings.restarts == 2
    assert stages["checks"].settings.steps == 5  # the flat option still reaches the stages it owns
    path.write_text('model = "m"\ndata = "d"\n[stages.nope]\nsteps = 1\n')
    with pytest.raises(InputError, match="names no stage nope"):
        plan(EvalConfig.from_options(read_toml(path)))
    path.write_text('model = "m"\ndata = "d"\n[stages.curve]\nwobble = 1\n')
    with pytest.raises(InputError, match="stage 'curve'.*wobble"):
        plan(EvalConfig.from_options(read_toml(path)))


def _toy():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    images = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, ImageSet(images=images, labels=labels, classes=["a", "b", "c", "d"], name="toy")


def test_a_changed_setting_is_refused_on_resume_naming_it_and_the_state_is_kept(tmp_path):
    model, data = _toy()

    def stages(steps):
        return [CleanStage(), AttackStage("fgsm", attack="fgsm"),
                AttackStage("pgd", attack="pgd", params={"steps": steps}), CurveStage(grid=[0.0, 0.05], steps=2)]

    def ctx():
        return EvalContext(model, data, ThreatModel("linf", 0.05), torch.device("cpu"), torch.float32, batch_size=8)

    Runner(stages(3), state_dir=tmp_path).run(ctx())
    saved = (tmp_path / "state.pt").read_bytes()
    ran: list[str] = []
    changed = stages(4)
    for stage in changed:
        stage.run = (lambda s, run: lambda c: (ran.append(s.name), run(c))[1])(stage, stage.run)
    with pytest.raises(InputError) as refused:
        Runner(changed, state_dir=tmp_path, resume=True).run(ctx())
    message = str(refused.value)
    assert "\n" not in message and "stage 'pgd' changed" in message and "params.steps 3 -> 4" in message
    assert "--overwrite" in message
    assert ran == [] and (tmp_path / "state.pt").read_bytes() == saved  # nothing run, nothing lost
    Runner(stages(3), state_dir=tmp_path, resume=True).run(ctx())  # the same settings still resume
    assert ran == []


def test_a_schema_1_report_still_loads_and_renders():
    from pathlib import Path

    from bastion.report import render_html
    from bastion.report.terminal import format_result

    report = json.loads((Path(__file__).parent / "data" / "report_schema1.json").read_text())
    assert report["schema_version"] == 1
    result = EvalResult.from_dict(report)
    assert {s.kind for s in result.stages} >= {"curve", "min-norm", "certify"}
    page, text = render_html(report), format_result(report)
    assert 'id="certified"' in page and 'id="min-norm"' in page and "robust accuracy" in text


def test_schema_1_and_2_reports_meet_in_history_compare_and_dashboard(tmp_path, capsys):
    from pathlib import Path

    from bastion.history.record import from_result
    from bastion.history.store import RunStore

    old = json.loads((Path(__file__).parent / "data" / "report_schema1.json").read_text())
    model, data = _toy()
    new = evaluate_model(model, data, EvalConfig.build(model="zoo:mnist-cnn", data="mnist-sample", suite="pgd", steps=2,
                                                       restarts=1, curve_points=0, certify=True, n0=10, n=32)).to_dict()
    db = tmp_path / "bastion.db"
    store = RunStore(db)
    for report in (old, new):
        store.record(from_result("evaluate", report))
    runs = store.runs()
    assert len(runs) == 2
    assert all(any(k.startswith("certified") for k in run.metrics) for run in runs)  # both versions' certify
    assert main(["history", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    ids = [run.run_id for run in runs]
    assert all(i in listing for i in ids)
    # no accuracy can drop by more than 1: the gate passes, and the two versions' metrics are set side by side
    assert main(["compare", ids[0], ids[1], "--db", str(db), "--max-drop", "1"]) == 0
    assert "robust_accuracy" in capsys.readouterr().out
    assert main(["dashboard", "--db", str(db), "--out", str(tmp_path / "site")]) == 0
    assert ids[0] in (tmp_path / "site" / "index.html").read_text()


def test_evaluate_prints_the_certification_and_minimal_norm_headlines(tmp_path, capsys):
    code = main(["evaluate", "--model", "zoo:mnist-cnn", "--data", "mnist-sample", "--limit", "6", "--eps", "0.3",
                 "--suite", "pgd", "--steps", "2", "--restarts", "1", "--curve-points", "0", "--certify",
                 "--n0", "10", "--n", "40", "--min-norm", "fab", "--out", str(tmp_path / "run"), "--no-db"])
    assert code == 0
    out = capsys.readouterr().out
    assert "certified accuracy" in out and "at the threat model" in out
    assert "fab: minimal adversarial norm found on" in out and "median" in out
    assert "stages (" in out and "passes/pt" in out


def test_a_run_that_cannot_resume_names_what_changed(tmp_path, monkeypatch):
    from bastion.evaluate.stages import PerClassStage

    model, data = _toy()
    config = EvalConfig.build(model="m", data="d", eps=0.05, steps=2, restarts=1, curve_points=0, suite="pgd")
    monkeypatch.setattr(PerClassStage, "run", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(model, data, config, state_dir=tmp_path)
    monkeypatch.undo()
    saved = (tmp_path / "state.pt").read_bytes()
    other = EvalConfig.build(model="m", data="d", eps=0.1, steps=2, restarts=1, curve_points=0, suite="pgd")
    with pytest.raises(InputError, match=r"eps 0\.05 -> 0\.1.*--overwrite"):
        evaluate_model(model, data, other, resume=True, state_dir=tmp_path)
    assert (tmp_path / "state.pt").read_bytes() == saved
    (tmp_path / "state.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="cannot read .*--overwrite"):
        evaluate_model(model, data, other, resume=True, state_dir=tmp_path)
