"""The model card (model_card.json) and the training-curve page (training.html) of a training run."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import torch

from bastion._io import write_atomic
from bastion.chance import chance_accuracy, near_chance
from bastion.render.svg import line_chart
from bastion.version import __version__

__all__ = ["CARD_SCHEMA_VERSION", "outcome_warnings", "write_card", "write_training_html"]

CARD_SCHEMA_VERSION = 1


def outcome_warnings(clean: float, robust: float | None, history: list[dict[str, float]], num_classes: int,
                     *, adversarial: bool) -> list[str]:
    """What a model card must say when training failed silently: chance-level accuracy, robustness that never rose.

    Args:
        clean: Held-out clean accuracy of the kept weights.
        robust: Held-out PGD accuracy of the kept weights (None without a threat model).
        history: The per-epoch rows (`val_robust` is the per-epoch held-out PGD accuracy).
        num_classes: Classes of the data; chance is 1 / num_classes.
        adversarial: Whether the method trains against an attack (then PGD accuracy should rise).
    """
    warnings, chance = [], chance_accuracy(num_classes)
    if near_chance(clean, num_classes):
        warnings.append(f"held-out clean accuracy {clean:.3f} is near chance ({chance:.3f}): the model did not learn; "
                        "train longer, lower --lr, or grow eps with --ramp-epochs (large eps such as MNIST 0.3)")
    robust_curve = [row["val_robust"] for row in history if "val_robust" in row]
    if adversarial and robust is not None and len(robust_curve) >= 2:
        if max(robust_curve[1:]) <= robust_curve[0] + 0.01 or robust <= chance / 2:
            warnings.append(f"held-out PGD accuracy did not rise during training ({robust_curve[0]:.3f} after epoch 1, "
                            f"{robust_curve[-1]:.3f} after the last; {robust:.3f} on the model card's check): the "
                            "adversarial training did not work")
    elif adversarial and robust is not None and robust <= chance / 2 and clean > chance + 0.05:
        warnings.append(f"held-out PGD accuracy is {robust:.3f}: the adversarial training gave no robustness")
    return warnings


def write_card(path: str | Path, fields: dict[str, Any]) -> Path:
    """Write the card: `fields` (method, hyper-parameters, model, data, metrics, history) plus provenance."""
    card = {
        "schema_version": CARD_SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
        "versions": {"bastion": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    return write_atomic(path, json.dumps(card, indent=2, sort_keys=False) + "\n")


def write_training_html(path: str | Path, card: dict[str, Any]) -> Path:
    """One self-contained page: loss and accuracy per epoch (inline SVG) and the card's settings."""
    history: list[dict[str, float]] = card.get("history", [])
    epochs = [row["epoch"] for row in history]
    accuracy = {
        label: [row.get(key, float("nan")) for row in history]
        for key, label in (("train_clean_accuracy", "train clean"), ("train_robust_accuracy", "train perturbed"),
                           ("val_clean", "held-out clean"), ("val_robust", "held-out PGD"))
        if any(key in row for row in history)
    }
    charts = [
        line_chart(epochs, accuracy, x_label="epoch", y_label="accuracy", title="Accuracy during training",
                   element_id="accuracy"),
        line_chart(epochs, {"training loss": [row["train_loss"] for row in history]}, x_label="epoch",
                   y_label="loss", title="Training loss", y_range=None, element_id="loss"),
    ]
    metrics = card.get("metrics", {})
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td><code>{escape(json.dumps(v))}</code></td></tr>"
                   for k, v in {**metrics, **card.get("hyperparameters", {})}.items())
    warnings = "".join(f"<li>{escape(w)}</li>" for w in card.get("warnings", []))
    title = f"bastion train: {card.get('method', '?')} on {card.get('data', {}).get('name', '?')}"
    html = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>body{{font:15px/1.5 system-ui,sans-serif;max-width:900px;"
        "margin:24px auto;color:#1f2933}} table{{border-collapse:collapse}} th,td{{text-align:left;padding:4px 10px;"
        "border-bottom:1px solid #e6e9ed}} svg{{max-width:100%;height:auto}} .warn{{color:#b71c1c}}</style></head>"
        f"<body><h1>{escape(title)}</h1>"
        + (f"<ul class=\"warn\">{warnings}</ul>" if warnings else "")
        + "".join(f"<figure>{chart}</figure>" for chart in charts)
        + f"<h2>Result and settings</h2><table>{rows}</table></body></html>\n"
    )
    return write_atomic(path, html)
