"""Every schema of report.json reads alike: schema 3 (each result once, in its stage) and the schemas 1 and 2 before it.

The old reports are built here from a real run's stages, the way schemas 1 and 2 laid them out
(per-feature keys, `{"section": ...}` results, top-level copies of the attacks, curve and classes).
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict

import pytest
import torch

from bastion.data import ImageSet
from bastion.errors import InputError
from bastion.evaluate import STAGES, EvalResult, Runner
from bastion.evaluate.context import EvalContext
from bastion.evaluate.records import AttackKind
from bastion.evaluate.report_schema import (
    attack_rows,
    class_floor,
    class_rows,
    curve_rows,
    stage_records,
    stage_result,
    upgrade,
)
from bastion.evaluate.stages import CertifyResult, MinNormResult
from bastion.history.record import from_result
from bastion.history.store import RunStore
from bastion.report import render_html
from bastion.report.terminal import format_result
from bastion.threat import ThreatModel
from tests.conftest import TinyCNN

PGD = {"attack": "pgd", "params": {"steps": 3, "n_restarts": 1}, "role": "main attack", "kind": "main"}
PLAN = [("clean", "clean", {}), ("fgsm", "attack", {"attack": "fgsm"}), ("pgd", "attack", PGD),
        ("curve", "curve", {"grid": [0.0, 0.05, 0.1], "steps": 3}), ("per-class", "per-class", {}),
        ("min-norm", "min-norm", {"attack": "fab", "grid": [0.0, 0.05]}),
        ("certify", "certify", {"sigma": 0.25, "n0": 10, "n": 64})]
SECTIONS = {"min-norm": "min_norm", "certify": "certify"}  # schema 1's key of each free-form section


@pytest.fixture(scope="module")
def v3() -> dict:
    """A schema-3 report of a real run: header fields and the stages' records."""
    torch.manual_seed(0)
    model = TinyCNN().eval()
    images = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[:4] = (labels[:4] + 1) % 4
    data = ImageSet(images=images, labels=labels, classes=["a", "b", "c", "d"], name="toy")
    ctx = EvalContext(model, data, ThreatModel("linf", 0.1), torch.device("cpu"), torch.float32, batch_size=8, seed=5)
    records = Runner([STAGES.get(kind)(name=name, **settings) for name, kind, settings in PLAN]).run(ctx)
    clean = ctx.results["clean"]
    return {"schema_version": 3, "run_id": "20261207-000000-abcdef", "created_at": "2026-12-07T00:00:00+00:00",
            "summary": {"clean_accuracy": clean.top1, "robust_accuracy": float(ctx.robust.float().mean()),
                        "norm": "linf", "eps": 0.1, "n_samples": 24, "model": "tiny", "data": "toy"},
            "clean": {"top1": clean.top1, "top5": clean.top5, "n_correct": clean.n_correct}, "gallery": [],
            "warnings": [], "provenance": {"model": {"spec": "tiny", "fingerprint": "f"}}, "config": {},
            "verdict": None, "stages": [asdict(r) for r in records]}


def _copies(v3: dict) -> dict:
    """The top-level copies schemas 1 and 2 kept, read off the stages by hand (not by the code under test)."""
    by_kind = {s["kind"]: s["result"] for s in v3["stages"]}
    attacks = [copy.deepcopy(s["result"]["record"]) for s in v3["stages"] if s["kind"] == "attack"]
    attacks[0]["standalone_accuracy"] = attacks[0]["robust_accuracy"]  # FGSM first: its own number
    return {"attacks": attacks, "curve": by_kind["curve"]["points"], "per_class": by_kind["per-class"]["classes"],
            "class_floor": by_kind["per-class"]["floor"]}


def _without_kinds(report: dict) -> dict:
    """The report as written before attack records (and attack stages' settings) had a kind."""
    old = copy.deepcopy(report)
    attack_stages = [s for s in old.get("stages", []) if s["kind"] == "attack"]
    for row in [*old.get("attacks", []), *(s["result"]["record"] for s in attack_stages)]:
        del row["kind"]
    for stage in attack_stages:
        del stage["settings"]["kind"]
    return old


def _v2(v3: dict) -> dict:
    stages = [{**s, "result": {"section": s["result"]}} if s["kind"] in SECTIONS else s for s in v3["stages"]]
    return _without_kinds({**v3, "schema_version": 2, **_copies(v3), "stages": stages})


def _v1(v3: dict) -> dict:
    old = {k: v for k, v in v3.items() if k != "stages"}
    by_kind = {s["kind"]: s["result"] for s in v3["stages"]}
    old.update(_copies(v3), schema_version=1, curve_settings=by_kind["curve"]["settings"])
    old.update({key: by_kind[kind] for kind, key in SECTIONS.items()})
    return _without_kinds(old)


OLD = [_v1, _v2, _without_kinds]
OLD_IDS = ["schema-1", "schema-2", "schema-3-before-kinds"]


def _section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}".*?</section>', html, re.DOTALL)
    assert match, name
    return match.group(0)


def test_schema_3_keeps_each_result_once(v3):
    assert not {"attacks", "curve", "per_class", "class_floor", "certify", "min_norm"} & set(v3)
    assert upgrade(v3) is v3
    assert [r["name"] for r in attack_rows(v3)] == ["fgsm", "pgd"]
    assert attack_rows(v3)[0]["standalone_accuracy"] == attack_rows(v3)[0]["robust_accuracy"]
    assert [p["eps"] for p in curve_rows(v3)] == [0.0, 0.05, 0.1] and len(class_rows(v3)) == 4


@pytest.mark.parametrize("old", OLD, ids=OLD_IDS)
def test_an_earlier_schema_reads_as_schema_3(v3, old):
    report = old(v3)
    assert upgrade(report)["schema_version"] == 3 and not {"attacks", "curve", "per_class"} & set(upgrade(report))
    assert attack_rows(report) == attack_rows(v3)
    assert curve_rows(report) == curve_rows(v3) and class_rows(report) == class_rows(v3)
    assert class_floor(report) == class_floor(v3) > 0
    for kind in ("certify", "min-norm", "curve"):
        assert stage_result(report, kind) == stage_result(v3, kind), kind
    loaded, current = EvalResult.from_dict(report), EvalResult.from_dict(v3)
    assert loaded.attacks == current.attacks and loaded.curve == current.curve
    assert loaded.per_class == current.per_class and loaded.class_floor == current.class_floor
    for name in ("certify", "min-norm"):
        assert loaded.stage_results[name] == current.stage_results[name]
    assert isinstance(loaded.stage_results["certify"], CertifyResult)
    assert isinstance(loaded.stage_results["min-norm"], MinNormResult)
    saved = loaded.to_dict()
    assert saved["schema_version"] == 3 and "attacks" not in saved and EvalResult.from_dict(saved) == loaded


def test_a_report_written_before_kinds_gets_its_records_kinds_from_their_roles(v3):
    old = _without_kinds(v3)
    assert "kind" not in old["stages"][1]["result"]["record"] and upgrade(old) is not old
    assert [r["kind"] for r in attack_rows(old)] == ["attack", "main"] == [r["kind"] for r in attack_rows(v3)]
    assert [r.kind for r in EvalResult.from_dict(old).attacks] == [AttackKind.ATTACK, AttackKind.MAIN]
    assert old == _without_kinds(v3)  # upgraded into a new dict, the one read left as it was
    assert EvalResult.from_dict(old).to_dict()["stages"][2]["result"]["record"]["kind"] == "main"  # saved with it


def test_eval_result_hands_out_typed_results_by_stage_name(v3):
    result = EvalResult.from_dict(v3)
    assert list(result.stage_results) == [name for name, _, _ in PLAN]
    certify = result.stage_results["certify"]
    assert isinstance(certify, CertifyResult) and len(certify.rows) == 24
    assert certify.summary.certified_accuracy[0].radius == 0.0
    assert [b.eps for b in result.stage_results["min-norm"].bounds()] == [0.0, 0.05]
    assert result.to_dict() == v3  # the stages are the whole report: nothing added, nothing lost


@pytest.mark.parametrize("old", OLD, ids=OLD_IDS)
def test_the_report_pages_read_every_schema_alike(v3, old):
    report = old(v3)
    page, expected = render_html(report), render_html(v3)
    for name in ("attacks", "robustness-curve", "per-class-accuracy", "certified", "min-norm"):
        assert _section(page, name) == _section(expected, name)
    text = format_result(report)
    assert text.split("\nstages (")[0] == format_result(v3).split("\nstages (")[0]  # summary, attacks, curve


@pytest.mark.parametrize("old", OLD, ids=OLD_IDS)
def test_the_history_store_reads_every_schema_alike(v3, old, tmp_path):
    expected = from_result("evaluate", v3).metrics
    assert {"after/fgsm", "after/pgd", "min_class_robust_accuracy", "certified_accuracy@0"} <= set(expected)
    store = RunStore(tmp_path / "bastion.db")
    store.record(from_result("evaluate", old(v3)))
    (run,) = store.runs()
    assert run.metrics == expected
    assert curve_rows(run.result) == curve_rows(v3)  # what the dashboard's overlay reads


def test_an_unknown_schema_is_refused_in_one_line(v3):
    future = {**v3, "schema_version": 99}
    with pytest.raises(InputError, match="schema_version 99 is not supported"):
        EvalResult.from_dict(future)
    assert stage_records(future) == []  # the lenient readers show no stages rather than fail
