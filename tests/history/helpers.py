"""Realistic JSON results of the three kinds of run, for the history tests (no model is run)."""

from __future__ import annotations

from typing import Any


def eval_report(*, run_id: str = "20261122-080000-aaaaaa", model: str = "zoo:mnist-cnn", clean: float = 0.99,
                robust: float = 0.8, per_class: list[float] | None = None,
                curve: list[tuple[float, float]] | None = None,
                eps: float = 0.3, norm: str = "linf", data_fingerprint: str = "d1", model_fingerprint: str = "m1",
                certified: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """A report.json dictionary with the keys the history reads."""
    classes = per_class if per_class is not None else [robust] * 10
    report: dict[str, Any] = {
        "schema_version": 1, "run_id": run_id, "created_at": "2026-11-22T08:00:00+00:00",
        "summary": {"clean_accuracy": clean, "robust_accuracy": robust, "norm": norm, "eps": eps, "n_samples": 100,
                    "model": model, "data": "mnist-sample"},
        "clean": {"top1": clean, "top5": 1.0, "n_correct": int(100 * clean)},
        "attacks": [{"name": "fgsm", "robust_accuracy": min(1.0, robust + 0.05)},
                    {"name": "pgd", "robust_accuracy": robust}],
        "curve": [{"eps": e, "accuracy": a} for e, a in (curve or [])],
        "per_class": [{"label": k, "name": str(k), "n": 10, "clean_accuracy": clean, "robust_accuracy": r,
                       "flagged": False} for k, r in enumerate(classes)],
        "provenance": {"model": {"spec": model, "fingerprint": model_fingerprint},
                       "data": {"spec": "mnist-sample", "fingerprint": data_fingerprint},
                       "command": "bastion evaluate"},
        "config": {"eps": eps, "norm": norm, "steps": 20},
    }
    if certified is not None:
        report["certify"] = {"summary": {"certified_accuracy": [{"radius": r, "accuracy": a} for r, a in certified]}}
    return report


def certify_report(*, sigma: float = 0.25, certified: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """A certify.json dictionary."""
    table = certified or [(0.0, 0.9), (0.5, 0.6), (1.0, 0.3)]
    return {"schema_version": 1, "kind": "certify", "created_at": "2026-11-22T08:00:00+00:00",
            "settings": {"sigma": sigma, "n": 1000},
            "summary": {"certified_accuracy": [{"radius": r, "accuracy": a} for r, a in table], "accuracy": table[0][1],
                        "abstain_rate": 0.05},
            "provenance": {"model": {"spec": "zoo:mnist-cnn-noise", "fingerprint": "m2"},
                           "data": {"spec": "mnist-sample", "fingerprint": "d1"}}}


def train_card(*, clean: float = 0.98, robust: float | None = 0.85) -> dict[str, Any]:
    """A model_card.json dictionary (as `bastion train` builds it)."""
    return {"method": "pgd-at", "hyperparameters": {"threat": "linf eps=0.3" if robust is not None else None},
            "model": {"spec": "bastion.models.nets:MnistCNN", "fingerprint": "m3"},
            "data": {"name": "mnist-sample:train", "fingerprint": "d2"},
            "metrics": {"clean_accuracy": clean, "pgd_accuracy": robust}, "command": "bastion train"}
