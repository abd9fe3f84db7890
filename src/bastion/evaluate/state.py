"""Save an evaluation's progress after each stage, so an interrupted run resumes where it stopped.

The state file holds tensors, numbers and strings only and is read back with `weights_only=True`.
It is tied to one configuration, model and data set by a key; a state with another key is ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from bastion._io import save_torch_atomic
from bastion.evaluate.context import EvalContext, Example

__all__ = ["StageState", "state_key"]

_EXAMPLE_FIELDS = ("index", "label", "clean_prediction", "adversarial_prediction", "attack")


def state_key(config: dict[str, Any], model_fingerprint: str, data_fingerprint: str) -> str:
    """Identifies what a state belongs to; settings that do not change results are left out."""
    relevant = {k: v for k, v in config.items() if k not in ("out", "resume", "device", "extra")}
    text = json.dumps(relevant, sort_keys=True, default=str) + model_fingerprint + data_fingerprint
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class StageState:
    """Completed stages' results plus the context's masks, in `directory/state.pt`.

    Args:
        directory: The run's output folder, or None to keep nothing.
        key: From `state_key`.
        resume: Load a matching state left by an earlier run.
    """

    def __init__(self, directory: str | Path | None, key: str, resume: bool) -> None:
        self.path = None if directory is None else Path(directory) / "state.pt"
        self.key = key
        self.done: dict[str, Any] = {}
        self._saved: dict[str, Any] = {}
        if resume and self.path is not None and self.path.is_file():
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                self._saved = saved
                self.done = dict(saved["done"])

    def restore(self, ctx: EvalContext) -> None:
        """Put the saved masks and gallery examples back into `ctx` (after the clean stage ran or was restored)."""
        if not self._saved:
            return
        masks = (self._saved[k].clone() for k in ("predictions", "correct", "robust"))
        ctx.predictions, ctx.correct, ctx.robust = masks
        ctx.warnings = list(self._saved["warnings"])
        ctx.examples = [
            Example(x=e["x"], x_adv=e["x_adv"], **{k: e[k] for k in _EXAMPLE_FIELDS}) for e in self._saved["examples"]
        ]

    def save(self, name: str, record: Any, ctx: EvalContext) -> None:
        """Record that stage `name` finished with `record` (JSON-like), and save the context atomically."""
        self.done[name] = record
        if self.path is None:
            return
        state = {
            "key": self.key,
            "done": self.done,
            "predictions": ctx.predictions,
            "correct": ctx.correct,
            "robust": ctx.robust,
            "warnings": list(ctx.warnings),
            "examples": [
                {"x": e.x, "x_adv": e.x_adv, **{k: getattr(e, k) for k in _EXAMPLE_FIELDS}} for e in ctx.examples
            ],
        }
        save_torch_atomic(state, self.path)

    def finish(self) -> None:
        """Remove the state once the report is written."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
