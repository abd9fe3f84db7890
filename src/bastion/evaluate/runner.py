"""Run a list of stages: what every stage needs, done once (saving, resuming, timing, passes, randomness).

After each stage the runner saves its result and the context (which points are correct and still
robust, the warnings, the gallery's examples) atomically to `state.pt`. With `resume`, the stages a
matching earlier run finished are restored instead of run again. Each stage's key chains the run's
key (model, data, threat model, seed), its name, kind and settings, and the key of the stage before
it, so a changed setting invalidates that stage and every stage after it: resuming such a state
is refused in one line that names the setting, old -> new, and the state is left as it is (only
--overwrite starts over). A stage draws its random numbers from `ctx.generator(...)` and its
chunks' `Batch.generator(...)`, seeded by the run seed and the stage's name
(`bastion.evaluate.shards.stream_seed`), so resuming, skipping or reordering stages never shifts
another stage's draws.

Under torchrun every process runs every stage on its share of the chunks (`bastion.evaluate.shards`);
passes are summed over the processes, rank 0 alone writes `state.pt`, and a resumed run reads it on
rank 0 and hands it to the others, so a run can resume with another number of processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion import distributed
from bastion._io import save_torch_atomic
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext, Example
from bastion.evaluate.result import StageRecord
from bastion.evaluate.shards import sum_over_processes
from bastion.evaluate.stage import Stage
from bastion.passes import counting_passes
from bastion.progress import stage_finished, stage_restored, stage_started

__all__ = ["STATE_NAME", "Runner", "stage_keys"]

logger = logging.getLogger(__name__)

STATE_NAME = "state.pt"
_FORMAT = 3
_START_OVER = "give --overwrite instead of --resume to start over (the saved stages are kept until then)"
_EXAMPLE_FIELDS = ("index", "label", "clean_prediction", "adversarial_prediction", "attack")


def stage_keys(run_key: str, stages: Sequence[Stage]) -> list[str]:
    """Each stage's key: a hash of the previous key, its name, kind and settings (so changes propagate)."""
    keys, previous = [], run_key
    for stage in stages:
        text = json.dumps([previous, stage.name, stage.kind, stage.settings_dict()], sort_keys=True, default=str)
        previous = hashlib.sha256(text.encode()).hexdigest()[:20]
        keys.append(previous)
    return keys


class Runner:
    """Runs stages in order on one context, saving after each and resuming from a saved state.

    Args:
        stages: The stages, with unique names.
        state_dir: Folder of `state.pt`; None keeps no state.
        resume: Restore the stages a matching earlier run finished.
        run_key: Identifies the run's model, data, threat model and seed; a state with another key
            is not resumed.
        identity: What `run_key` hashes, by name (model and data fingerprints, eps, seed, ...): saved
            with the state, so a run that cannot resume names what changed.
        counted: The module whose passes are counted per stage (the classifier itself, not the
            defenses around it); None counts `ctx.model`.
    """

    def __init__(self, stages: Sequence[Stage], *, state_dir: str | Path | None = None, resume: bool = False,
                 run_key: str = "", identity: dict[str, Any] | None = None,
                 counted: nn.Module | None = None) -> None:
        names = [s.name for s in stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InputError(f"stage names must be unique in a suite; repeated: {', '.join(duplicates)}")
        self.stages = list(stages)
        self.path = None if state_dir is None else Path(state_dir) / STATE_NAME
        self.resume = resume
        self.run_key = run_key
        self.identity = dict(identity or {})
        self.counted = counted
        self.keys = stage_keys(run_key, self.stages)
        self._saved: list[dict[str, Any]] = []
        self._examples: list[dict[str, Any]] = []

    def run(self, ctx: EvalContext) -> list[StageRecord]:
        """Run (or restore) every stage on `ctx`; returns one record per stage, in order."""
        records = self._restore(ctx) if self.resume else []
        for record in records:
            stage_restored(record.name, record.seconds, enabled=ctx.progress)
        n_points = max(1, len(ctx.data))
        for stage, key in zip(self.stages[len(records):], self.keys[len(records):], strict=True):
            ctx.stage = stage.name
            started = stage_started(stage.name, enabled=ctx.progress)
            start, warned = time.perf_counter(), len(ctx.warnings)
            with counting_passes(self.counted if self.counted is not None else ctx.model) as counts:
                result = stage.run(ctx)
            passes = sum_over_processes(counts.count)
            _share_context(ctx, warned)
            record = StageRecord(
                name=stage.name, kind=stage.kind, settings=stage.settings_dict(), seconds=time.perf_counter() - start,
                passes=asdict(passes),
                passes_per_point={"forward": passes.forward_samples / n_points,
                                  "backward": passes.backward_samples / n_points},
                headline=type(stage).headline(result), result=result.to_dict())
            ctx.results[stage.name] = result
            stage_finished(stage.name, started, enabled=ctx.progress, found=record.headline)
            records.append(record)
            self._save(key, record, ctx)
        ctx.stage = ""
        return records

    def finish(self) -> None:
        """Remove the saved state once the report is written."""
        if self.path is not None and distributed.is_main():
            self.path.unlink(missing_ok=True)

    def _restore(self, ctx: EvalContext) -> list[StageRecord]:
        """The records of the stages a matching earlier run finished; a state that does not match is refused.

        Resuming never throws saved work away: a state of another version, of another run (model,
        data, eps, ...) or with other stage settings raises an `InputError` that names what changed,
        old -> new, and leaves the state as it is; starting over is the caller's choice (--overwrite).
        """
        saved, unreadable = distributed.broadcast_object(self._read() if distributed.is_main() else (None, None))
        if unreadable is not None:
            raise InputError(f"--resume: cannot read {self.path} ({unreadable}); {_START_OVER}")
        if saved is None:
            return []
        if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
            raise InputError(f"--resume: {self.path} was written by another version of bastion and cannot be "
                             f"resumed; {_START_OVER}")
        if saved.get("run_key") != self.run_key:
            old = saved.get("identity") or {}
            changed = [f"{k} {old.get(k)!r} -> {self.identity.get(k)!r}" for k in sorted(set(old) | set(self.identity))
                       if old.get(k) != self.identity.get(k)]
            raise InputError(f"--resume: the run saved in {self.path} had other settings "
                             f"({', '.join(changed) or 'another model, data set, threat model or seed'}): resume "
                             f"it with its own settings; {_START_OVER}")
        entries: list[dict[str, Any]] = list(saved["stages"])
        kept = 0
        while kept < min(len(entries), len(self.stages)) and entries[kept]["key"] == self.keys[kept]:
            kept += 1
        if kept < len(entries):
            raise InputError(f"--resume: the run saved in {self.path} differs: "
                             f"{_what_changed(entries[kept], self.stages[kept] if kept < len(self.stages) else None)}"
                             f"; resume it with its own settings; {_START_OVER}")
        self._saved = entries[:kept]
        self._examples = list(saved.get("examples", []))
        records = []
        for stage, entry in zip(self.stages, self._saved, strict=False):
            record = StageRecord(**entry["record"])
            ctx.results[stage.name] = stage.Result.from_dict(record.result)
            records.append(record)
        if kept:
            _restore_context(ctx, self._saved[-1]["context"], self._examples)
        return records

    def _read(self) -> tuple[Any, str | None]:
        """The saved state (None when there is none), or why it cannot be read (the caller refuses it)."""
        if self.path is None or not self.path.is_file():
            return None, None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True), None
        except Exception as error:  # noqa: BLE001 - any unreadable state is refused in one line, and kept
            return None, (str(error).splitlines() or [type(error).__name__])[0][:80]

    def _save(self, key: str, record: StageRecord, ctx: EvalContext) -> None:
        self._saved.append({"key": key, "record": asdict(record), "context": _snapshot(ctx)})
        if self.path is not None and distributed.is_main():
            examples = [{"x": e.x, "x_adv": e.x_adv, **{k: getattr(e, k) for k in _EXAMPLE_FIELDS}}
                        for e in ctx.examples]
            save_torch_atomic({"format": _FORMAT, "run_key": self.run_key, "identity": self.identity,
                               "stages": self._saved, "examples": examples}, self.path)


def _what_changed(entry: dict[str, Any], stage: Stage | None) -> str:
    """One phrase naming the first stage whose settings differ from the saved run's, and how."""
    old = entry["record"]
    if stage is None:
        return f"the saved run had a stage {old['name']!r} this run does not"
    if (old["name"], old["kind"]) != (stage.name, stage.kind):
        return f"stage {stage.name!r} replaces the saved run's {old['name']!r}"
    before, after = _flat(old["settings"]), _flat(stage.settings_dict())
    changes = [f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)]
    return f"stage {stage.name!r} changed ({', '.join(changes) or 'an earlier setting changed'})"


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted names (`params.steps`), so a change names the one value that changed."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _share_context(ctx: EvalContext, warned: int) -> None:
    """After a stage under torchrun: every process's `robust` flags and new warnings, on every process.

    The stages merge what they computed as they go (`Shard.merge`); this makes sure no flag a
    process cleared is lost, and that the warnings any process raised reach the report.
    """
    if not distributed.world().active:
        return
    ctx.robust = distributed.all_reduce_and(ctx.robust)
    new = [w for part in distributed.all_gather(ctx.warnings[warned:]) for w in part]
    ctx.warnings = ctx.warnings[:warned] + list(dict.fromkeys(new))


def _snapshot(ctx: EvalContext) -> dict[str, Any]:
    """The context after a stage; examples only grow, so their count marks which of them existed then."""
    return {"predictions": ctx.predictions.clone(), "correct": ctx.correct.clone(), "robust": ctx.robust.clone(),
            "broken_at": ctx.broken_at.clone(), "warnings": list(ctx.warnings), "n_examples": len(ctx.examples)}


def _restore_context(ctx: EvalContext, saved: dict[str, Any], examples: list[dict[str, Any]]) -> None:
    ctx.predictions, ctx.correct, ctx.robust, ctx.broken_at = (
        saved[k].clone() for k in ("predictions", "correct", "robust", "broken_at"))
    ctx.warnings = list(saved["warnings"])
    ctx.examples = [Example(x=e["x"], x_adv=e["x_adv"], **{k: e[k] for k in _EXAMPLE_FIELDS})
                    for e in examples[: saved["n_examples"]]]
