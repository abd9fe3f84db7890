"""The contract every registered stage keeps: deterministic, resumable, JSON round trip, renders itself.

Parametrized over `STAGES`, so registering a stage is enough to get it tested (add its small settings
to `CASES`: the test that CASES covers the registry fails until then).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict

import pytest
import torch

from bastion.data import ImageSet
from bastion.defenses import Ensemble
from bastion.errors import InputError
from bastion.evaluate import STAGES, SUITES, EvalConfig, Runner, plan
from bastion.evaluate import stage as stage_module
from bastion.evaluate.context import EvalContext
from bastion.evaluate.records import AttackKind, AttackRecord, Finding
from bastion.evaluate.report_schema import attack_rows, attack_table, kind_of_role
from bastion.evaluate.stage import Stage, json_ready
from bastion.report import render_html
from bastion.report.terminal import format_result
from bastion.threat import ThreatModel
from tests.conftest import TinyCNN
from tests.evaluate.comparable import without_clocks

ATTACK = {"attack": "pgd", "params": {"steps": 3, "n_restarts": 1}, "role": "main attack", "kind": "main"}
CHECKS = {"probe_points": 12, "blackbox_queries": 15, "steps": 3}
EXTENDED = {"patch_steps": 2, "patch_placements": 1, "spatial_angles": 3, "spatial_translations": 3,
            "spatial_steps": 1, "corruptions": ["contrast"], "severities": [1], "max_points": 3,
            "onepixel_population": 6, "onepixel_steps": 1, "hsj_queries": 30, "gallery": 1, "universal_epochs": 1}

#: The kinds of the attack records of each stage kind's result besides `attack` (whose one record has its
#: settings' kind); the other stage kinds hold none.
RECORD_KINDS = {"escalation": {AttackKind.ESCALATION, AttackKind.MASKING_CHECK, AttackKind.OVERHEAD},
                "audit": {AttackKind.AUDIT, AttackKind.AUDIT_ESCALATION}}
#: The stage kinds whose results report findings to the verdict.
FINDING_KINDS = {"checks", "audit"}

#: For each stage kind: the stages before it that it reads (with small settings), then the stage itself.
CASES: dict[str, list[tuple[str, str, dict]]] = {
    "clean": [("clean", "clean", {})],
    "attack": [("clean", "clean", {}), ("pgd", "attack", ATTACK)],
    "checks": [("clean", "clean", {}), ("fgsm", "attack", {"attack": "fgsm"}), ("checks", "checks", CHECKS)],
    "escalation": [("clean", "clean", {}), ("checks", "checks", CHECKS),
                   ("escalation", "escalation", {"adaptive": True, "steps": 2, "restarts": 1, "blackbox_queries": 10,
                                                 "eot_samples": 2})],
    "curve": [("clean", "clean", {}), ("pgd", "attack", ATTACK), ("curve", "curve", {"grid": [0.0, 0.05, 0.1],
                                                                                      "steps": 3})],
    "audit": [("clean", "clean", {}), ("pgd", "attack", ATTACK),
              ("audit", "audit", {"sample": 4, "closest": 2, "steps": 2, "n_queries": 10})],
    "probes": [("clean", "clean", {}), ("probes", "probes", {"probe_points": 12})],
    "per-class": [("clean", "clean", {}), ("pgd", "attack", ATTACK), ("per-class", "per-class", {})],
    "members": [("clean", "clean", {}), ("members", "members", {"steps": 2, "restarts": 1})],
    "min-norm": [("clean", "clean", {}), ("min-norm", "min-norm", {"attack": "fab", "grid": [0.0, 0.05]})],
    "certify": [("clean", "clean", {}), ("certify", "certify", {"sigma": 0.25, "n0": 10, "n": 64})],
    "extended": [("clean", "clean", {}), ("extended", "extended", {"budget": EXTENDED})],
    "agreement": [("clean", "clean", {}), ("agreement", "agreement", {"surrogate": "tests.conftest:seeded_tiny_cnn"})],
    "detection": [("clean", "clean", {}), ("detection", "detection", {"fpr": 0.2, "adaptive_limit": 3, "steps": 2})],
    "spatial": [("clean", "clean", {}), ("grid", "spatial", {"angles": 3, "translations": 3}),
                ("first-order", "spatial", {"method": "first-order", "steps": 2, "max_angle": 10.0})],
    "corruption": [("corruption", "corruption", {"corruptions": ["contrast", "gaussian-noise"], "severities": [1, 3]}),
                   ("baseline", "corruption", {"corruptions": ["contrast", "gaussian-noise"], "severities": [1, 3],
                                               "model": "tests.conftest:seeded_tiny_cnn"})],
    "patch-fit": [("patch-fit", "patch-fit", {"steps": 3, "train_batch": 4, "size": 0.1})],
    "patch-measure": [("patch-fit", "patch-fit", {"steps": 3, "train_batch": 4, "size": 0.1}),
                      ("patch-measure", "patch-measure", {"placements": 2})],
    "universal-fit": [("universal-fit", "universal-fit", {"method": "sgd", "epochs": 1, "batch_size": 8})],
    "universal-score": [("universal-fit", "universal-fit", {"method": "sgd", "epochs": 1, "batch_size": 8}),
                        ("universal-score", "universal-score", {"split": True})],
    "detector-rates": [("rates", "detector-rates", {"fpr": 0.2, "steps": 2, "adaptive_limit": 3})],
    "detector-adaptive": [("rates", "detector-rates", {"fpr": 0.2, "steps": 2, "adaptive_limit": 3}),
                          ("adaptive-margin", "detector-adaptive", {"detector": "margin", "steps": 2})],
}


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    first = TinyCNN().eval()
    if kind != "members":
        return first
    torch.manual_seed(1)
    return Ensemble([first, TinyCNN().eval()], names=["a", "b"])


def _data(model: torch.nn.Module) -> ImageSet:
    images = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[:3] = (labels[:3] + 1) % 4
    return ImageSet(images=images, labels=labels, classes=["a", "b", "c", "d"], name="toy")


def _stages(kind: str) -> list[Stage]:
    return [STAGES.get(k)(name=name, **settings) for name, k, settings in CASES[kind]]


def _context(kind: str) -> EvalContext:
    model = _model(kind)
    return EvalContext(model, _data(model), ThreatModel("linf", 0.1), torch.device("cpu"), torch.float32,
                       batch_size=8, seed=5)


def _results(records) -> list[dict]:
    """The records without wall-clock times (which differ between runs)."""
    return [without_clocks(asdict(r)) for r in records]


def test_cases_cover_every_registered_stage():
    assert set(CASES) == set(STAGES.names())


@pytest.fixture(scope="module", params=sorted(CASES))
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def uninterrupted(kind):
    ctx = _context(kind)
    return ctx, Runner(_stages(kind)).run(ctx)


def test_deterministic_under_a_seed(kind, uninterrupted):
    _, first = uninterrupted
    ctx = _context(kind)
    assert _results(Runner(_stages(kind)).run(ctx)) == _results(first)


def test_result_round_trips_through_json(kind, uninterrupted):
    ctx, records = uninterrupted
    for stage, record in zip(_stages(kind), records, strict=True):
        text = json.dumps(record.result, allow_nan=False)
        rebuilt = stage.Result.from_dict(json.loads(text))
        assert type(rebuilt) is type(ctx.results[stage.name]) is stage.Result
        assert rebuilt == ctx.results[stage.name]
        assert rebuilt.to_dict() == record.result


def test_every_result_is_typed(kind, uninterrupted):
    """No free-form `{"section": ...}` results: each field of a stage's result is named and typed."""
    ctx, records = uninterrupted
    assert not hasattr(stage_module, "SectionResult")
    result = ctx.results[records[-1].name]
    hints = typing.get_type_hints(type(result))
    names = [f.name for f in dataclasses.fields(result)]
    assert names and names != ["section"] and all(hints[n] is not typing.Any for n in names)


def test_renders_a_terminal_row_and_an_html_section(kind, uninterrupted):
    ctx, records = uninterrupted
    cls = STAGES.get(kind)
    subject = records[-1]
    assert subject.kind == kind and isinstance(subject.headline, str) and subject.headline.strip()
    assert isinstance(cls.html_section(ctx.results[subject.name]), str)
    report = {"summary": {"model": "tiny", "data": "toy", "n_samples": 24, "norm": "linf", "eps": 0.1,
                          "clean_accuracy": 0.9, "robust_accuracy": 0.5},
              "attacks": [], "stages": [asdict(r) for r in records]}
    text, page = format_result(report), render_html(report)
    assert subject.headline in text and f"<b>{subject.name}</b>" in page
    section = cls.html_section(ctx.results[subject.name])
    assert section == "" or section.split(">")[0] in page  # a stage's own section is part of the page


def test_resumes_to_the_same_result_after_a_kill_in_the_stage(kind, uninterrupted, tmp_path):
    _, expected = uninterrupted
    stages = _stages(kind)
    subject = stages[-1]
    real_run = subject.run

    def killed(ctx):
        raise KeyboardInterrupt

    subject.run = killed  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        Runner(stages, state_dir=tmp_path).run(_context(kind))
    assert (tmp_path / "state.pt").is_file() == (len(stages) > 1)  # saved after each finished stage
    subject.run = real_run  # type: ignore[method-assign]
    ran: list[str] = []
    for stage in stages:
        stage.run = (lambda s, run: lambda ctx: (ran.append(s.name), run(ctx))[1])(stage, stage.run)
    runner = Runner(stages, state_dir=tmp_path, resume=True)
    resumed = runner.run(_context(kind))
    assert ran == [subject.name]  # the finished stages were restored, not run again
    assert _results(resumed) == _results(expected)
    runner.finish()
    assert not (tmp_path / "state.pt").exists()


def test_the_report_and_the_verdict_read_it_through_one_interface(kind, uninterrupted):
    """Attack records typed by kind, findings through `verdict_findings`, and one attack table for every reader.

    The role a report written before kinds holds upgrades to the kind written now (`kind_of_role`).
    """
    ctx, records = uninterrupted
    results = [ctx.results[r.name] for r in records]
    for stage, result in zip(_stages(kind), results, strict=True):
        rows = result.attack_records()
        assert all(isinstance(r, AttackRecord) and isinstance(r.kind, AttackKind) for r in rows)
        if stage.kind == "attack":
            assert [r.kind for r in rows] == [stage.settings.kind]
        else:
            assert {r.kind for r in rows} <= RECORD_KINDS.get(stage.kind, set())
        assert all(kind_of_role(r.role) is r.kind for r in rows)
        findings = result.verdict_findings()
        assert all(isinstance(f, Finding) for f in findings) and bool(findings) == (stage.kind in FINDING_KINDS)
    report = {"schema_version": 3, "stages": [asdict(r) for r in records]}
    assert attack_rows(report) == [json_ready(r) for r in attack_table(results)]
    assert all(isinstance(row["kind"], str) for row in attack_rows(report))  # JSON values, not enums


def test_every_attack_kind_is_written_by_a_suite_or_a_stage():
    """Each kind but the attack stage's default is a suite entry's, or one a stage writes (`RECORD_KINDS`)."""
    torch.manual_seed(0)
    deployed = TinyCNN().eval()
    deployed.gradient_free = True
    written = set().union(*RECORD_KINDS.values())
    for suite in SUITES:
        config = EvalConfig.build(model="m", data="d", suite=suite, surrogate="tests.conftest:seeded_tiny_cnn")
        stages = plan(config, deployed if suite == "deployed" else None)
        written |= {s.settings.kind for s in stages if s.kind == "attack"}
        assert all(kind_of_role(s.settings.role) is s.settings.kind for s in stages if s.kind == "attack")
    assert written == set(AttackKind) - {AttackKind.ATTACK}
    assert STAGES.get("attack")().settings.kind is AttackKind.ATTACK
    assert STAGES.get("attack")(kind="sanity").settings.kind is AttackKind.SANITY  # a TOML table gives the value
    with pytest.raises(InputError, match="unknown attack kind 'nonsense'; choose one of: attack, sanity"):
        STAGES.get("attack")(kind="nonsense")
