"""Reading the three kinds of result into records, and the gate's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import InputError
from bastion.history import Thresholds, compare_runs, from_result, read_gate_table
from tests.history.helpers import certify_report, eval_report, train_card


def test_evaluate_report_metrics() -> None:
    record = from_result("evaluate", eval_report(robust=0.7, per_class=[0.5] + [0.9] * 9, certified=[(0.5, 0.4)]))
    assert record.run_id == "20261122-080000-aaaaaa" and record.kind == "evaluate"
    assert record.model == "zoo:mnist-cnn" and record.threat == "linf eps=0.3"
    assert (record.norm, record.eps, record.data_fingerprint, record.model_fingerprint) == ("linf", 0.3, "d1", "m1")
    assert record.metrics["clean_accuracy"] == 0.99 and record.metrics["robust_accuracy"] == 0.7
    assert record.metrics["min_class_robust_accuracy"] == 0.5
    assert record.metrics["after/pgd"] == 0.7 and record.metrics["certified_accuracy@0.5"] == 0.4
    assert from_result("evaluate", eval_report(), model_name="mnist").model == "mnist"


def test_certify_and_train_results() -> None:
    certify = from_result("certify", certify_report(sigma=0.5))
    assert certify.threat == "l2 sigma=0.5" and certify.model == "zoo:mnist-cnn-noise"
    assert certify.metrics["certified_accuracy@0.5"] == 0.6 and certify.metrics["smoothed_accuracy"] == 0.9
    train = from_result("train", train_card(robust=0.85))
    assert train.threat == "linf eps=0.3" and (train.norm, train.eps) == ("linf", 0.3)
    assert train.metrics == {"clean_accuracy": 0.98, "robust_accuracy": 0.85}
    assert from_result("train", train_card(robust=None)).threat == "none"
    assert train.run_id != from_result("train", train_card()).run_id  # generated ids never collide


def test_missing_keys_are_skipped() -> None:
    record = from_result("evaluate", {})
    assert record.metrics == {} and record.threat == "unknown" and record.model == "unnamed"
    assert from_result("certify", {"summary": None}).metrics == {}
    with pytest.raises(InputError, match="unknown run kind"):
        from_result("attack", {})


def test_gate_names_what_dropped() -> None:
    base = from_result("evaluate", eval_report(clean=0.99, robust=0.80))
    current = from_result("evaluate", eval_report(clean=0.985, robust=0.75))
    report = compare_runs(base, current, Thresholds(max_drop=0.02))
    assert not report.passed
    assert [row.metric for row in report.regressions] == ["robust_accuracy"]
    text = report.format()
    assert "REGRESSED" in text and "robust_accuracy dropped by 0.0500 (allowed 0.0200)" in text
    assert compare_runs(base, from_result("evaluate", eval_report(clean=0.98, robust=0.79))).passed
    # a drop of exactly max_drop passes; a per-metric threshold overrides max_drop
    assert compare_runs(base, from_result("evaluate", eval_report(clean=0.99, robust=0.78))).passed
    loose = Thresholds(max_drop=0.001, robust=0.1)
    assert [r.metric for r in compare_runs(base, from_result("evaluate", eval_report(clean=0.97, robust=0.75)),
                                           loose).regressions] == ["clean_accuracy"]


def test_class_floor_and_certified_radius() -> None:
    base = from_result("evaluate", eval_report(certified=[(0.5, 0.6), (1.0, 0.3)]))
    current = from_result("evaluate", eval_report(per_class=[0.2] + [0.9] * 9, certified=[(0.5, 0.5), (1.0, 0.3)]))
    report = compare_runs(base, current, Thresholds(class_floor=0.3, certified_radius=0.5, max_drop=0.05))
    assert {r.metric for r in report.regressions} == {"class 0 robust accuracy", "certified_accuracy@0.5"}
    assert "under the floor" in report.format()
    missing = compare_runs(base, from_result("evaluate", eval_report()), Thresholds(certified_radius=1.0))
    assert [r.metric for r in missing.regressions] == ["certified_accuracy@1"]
    assert "MISSING" in missing.format()


def test_gate_table_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "eval.toml"
    config.write_text('model = "zoo:mnist-cnn"\n[gate]\nbaseline = "best"\nrobust = 0.01\nclass_floor = 0.4\n')
    table = read_gate_table(config)
    assert table["baseline"] == "best"
    limits = Thresholds.from_table(table, max_drop=0.03)
    assert (limits.robust, limits.class_floor, limits.max_drop) == (0.01, 0.4, 0.03)
    nested = tmp_path / "nested.toml"
    nested.write_text('[evaluate]\nmodel = "x"\n[evaluate.gate]\nclean = 0.05\n')
    assert read_gate_table(nested) == {"clean": 0.05}
    assert read_gate_table(None) == {}
    with pytest.raises(InputError, match="unknown \\[gate\\] key"):
        Thresholds.from_table({"robsut": 0.1})
    with pytest.raises(InputError, match="must lie in"):
        Thresholds(max_drop=2.0)
