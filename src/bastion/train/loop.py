"""The training loop every method shares: epochs, schedules, eps ramp-up, checks, checkpoints, resume."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bastion import distributed
from bastion.data import ImageSet
from bastion.errors import InputError
from bastion.passes import model_device_dtype
from bastion.progress import progress_bar, stage_finished, stage_started
from bastion.threat import ThreatModel
from bastion.train._check import heldout_accuracy
from bastion.train.augment import augment, resolve_augment
from bastion.train.base import StepOutput, Trainer
from bastion.train.checkpoint import (
    CHECKPOINT_NAME,
    check_same_settings,
    load_checkpoint,
    plain_settings,
    save_atomic,
)
from bastion.train.config import FitConfig
from bastion.train.schedule import build_optimizer, build_schedule, ramped_eps
from bastion.train.sharding import epoch_order, reduce_totals, shard_steps, wrap

__all__ = ["FitConfig", "FitResult", "fit"]

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What `fit` returns: one history row per epoch, the selected epoch and its weights, warnings."""

    history: list[dict[str, float]]
    selected_epoch: int
    state_dict: dict[str, Tensor]
    seconds: float
    warnings: list[str] = field(default_factory=list)


def fit(
    model: nn.Module,
    trainer: Trainer,
    train: ImageSet,
    *,
    threat: ThreatModel | None = None,
    config: FitConfig | None = None,
    val: ImageSet | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> FitResult:
    """Train `model` in place with `trainer` on `train`, checkpointing each epoch to `out`/checkpoint.pt.

    Randomness comes from one `torch.Generator` seeded with `config.seed`, whose state goes into the
    checkpoint with the model, optimizer, schedule and global RNG (for dropout), so a resumed run
    ends with the same weights as an uninterrupted one. The global RNG is forked, not reseeded for
    the caller. After each epoch the clean and PGD accuracy on the first `check_size` images of
    `val` are recorded; a method with `keep_best` returns the weights of the best robust epoch.

    Under torchrun (an initialized process group of several processes) the model trains as
    `DistributedDataParallel` on a `DistributedSampler` shard of each epoch (`bastion.train.sharding`);
    only rank 0 checks, writes checkpoints, and its checkpoint resumes with any number of processes.

    Args:
        model: The network, on its device; trained in place.
        trainer: The training method.
        train: Training images.
        threat: The threat model (required for adversarial methods); eps follows the ramp-up.
        config: Loop settings.
        val: Held-out images for the per-epoch check, never trained on.
        out: Directory for checkpoint.pt; None keeps no checkpoint.
        resume: Continue from `out`/checkpoint.pt.
        progress: Show progress (`bastion.progress`): a bar with loss, clean and robust accuracy in a
            terminal, a line every ~30 s elsewhere, and a line per epoch.
    """
    config = config or FitConfig()
    if trainer.adversarial and threat is None:
        raise InputError(f"{trainer.name} is adversarial training: give a threat model (--eps, --norm)")
    if resume and out is None:
        raise InputError("resume needs the output directory of the run to continue")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _Run(model, trainer, train, threat, config, val, out, progress).run(resume)


class _Run:
    """One training run's state, so that `fit` stays readable."""

    def __init__(self, model: nn.Module, trainer: Trainer, train: ImageSet, threat: ThreatModel | None,
                 config: FitConfig, val: ImageSet | None, out: str | Path | None, progress: bool) -> None:
        self.model, self.trainer, self.train, self.threat, self.config = model, trainer, train, threat, config
        self.check = val.select(min(config.check_size, len(val))) if val is not None and config.check_size else None
        self.path = Path(out) / CHECKPOINT_NAME if out is not None else None
        self.progress = progress
        self.device, self.dtype = model_device_dtype(model)
        self.amp = config.amp if config.amp is not None else self.device.type == "cuda"
        self.padding, self.flip = resolve_augment(config.augment, train.shape)
        self.world = distributed.world()
        self.steps_per_epoch = shard_steps(len(train), config.batch_size, self.world)
        self.optimizer = build_optimizer(model.parameters(), config.optimizer, config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.schedule = build_schedule(self.optimizer, config.schedule or trainer.default_schedule,
                                       config.epochs * self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.keep_best = trainer.keep_best if config.keep_best is None else config.keep_best
        self.state: dict[str, Tensor] = {}
        self.history: list[dict[str, float]] = []
        self.best: tuple[int, float, dict[str, Tensor]] | None = None
        self.warnings: list[str] = []
        self.gap_seen = False
        self.epoch, self.seconds = 0, 0.0
        if self.amp:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net = wrap(model, self.world)  # DDP under torchrun: trainers get it, attacks unwrap it

    def run(self, resume: bool) -> FitResult:
        if resume and self.path is not None:
            self._restore(_load_on_main(self.path))
        while self.epoch < self.config.epochs:
            start = time.perf_counter()
            name = f"epoch {self.epoch + 1}/{self.config.epochs}"
            started = stage_started(name, enabled=self.progress and self.world.is_main)
            row = self._epoch()
            row["epoch_seconds"] = time.perf_counter() - start  # training only, without the held-out check
            row.update(self._check())
            self.seconds += time.perf_counter() - start
            row["seconds"] = self.seconds
            stage_finished(name, started, enabled=self.progress and self.world.is_main,
                           found=", ".join(f"{k} {row[k]:.3f}" for k in ("train_loss", "val_clean", "val_robust")
                                           if k in row))
            self.history.append(row)
            self.epoch += 1
            self._guard(row)
            if self.path is not None and self.world.is_main:
                save_atomic(self._snapshot(), self.path)
        if self.keep_best and self.best is not None:
            epoch, state = self.best[0], self.best[2]
        else:
            epoch, state = self.epoch, _copy(self.model.state_dict())
        return FitResult(self.history, epoch, state, self.seconds, self.warnings)

    def _epoch(self) -> dict[str, float]:
        self.model.train()
        order = epoch_order(len(self.train), self.epoch, self.config.seed, self.world, self.generator)
        totals = {"loss": 0.0, "n": 0.0, "clean": 0.0, "n_clean": 0.0, "robust": 0.0, "n_robust": 0.0}
        bar = progress_bar(self.config.epochs * len(self.train), initial=self.epoch * len(self.train), unit="img",
                           desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                           enabled=self.progress and self.world.is_main)
        for index in range(self.steps_per_epoch):  # the bar counts images over the whole run: its ETA is the run's
            rows = order[index * self.config.batch_size : (index + 1) * self.config.batch_size]
            x, y = self.train.batch(rows, device=self.device, dtype=self.dtype)
            x = augment(x, self.padding, self.flip, self.generator)
            if self.amp:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self._step(x, y, self.epoch + index / self.steps_per_epoch)
            self.schedule.step()
            _accumulate(totals, out, y)
            bar.update(len(y) * self.world.size)  # about the images all processes trained on
            bar.set_postfix(loss=f"{totals['loss'] / totals['n']:.3f}", **_accuracies(totals, short=True))
        bar.close()
        totals = reduce_totals(totals, self.world)
        row: dict[str, float] = {"epoch": float(self.epoch + 1), "lr": float(self.schedule.get_last_lr()[0]),
               "train_loss": totals["loss"] / max(1.0, totals["n"])}
        row.update({f"train_{k}": v for k, v in _accuracies(totals).items()})
        if self.threat is not None:
            row["eps"] = ramped_eps(self.threat.eps, self.epoch + 1, self.config.ramp_epochs)
        return row

    def _step(self, x: Tensor, y: Tensor, progress: float) -> StepOutput:
        threat = self.threat or ThreatModel("linf", 0.0)
        threat = threat.with_eps(ramped_eps(threat.eps, progress, self.config.ramp_epochs))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.trainer.step(self.net, self.optimizer, x, y, threat, generator=self.generator,
                                    state=self.state)
        if not math.isfinite(float(out.loss)):
            raise InputError(f"the training loss became {float(out.loss)} at epoch {self.epoch + 1}: lower --lr")
        return out

    def _check(self) -> dict[str, float]:
        if self.check is None:
            return {}
        if self.world.active:  # rank 0 checks (all replicas hold the same weights) and tells the others
            return distributed.broadcast_object(self._held_out(self.check) if self.world.is_main else {})
        return self._held_out(self.check)

    def _held_out(self, check: ImageSet) -> dict[str, float]:
        clean, robust = heldout_accuracy(self.model, check, self.threat, steps=self.config.check_steps,
                                         seed=self.config.seed + 1)
        row = {"val_clean": clean}
        if robust is not None:
            row["val_robust"] = robust
        return row

    def _guard(self, row: dict[str, float]) -> None:
        """Keep the best robust epoch; warn when robust accuracy collapses (catastrophic overfitting)."""
        robust = row.get("val_robust")
        if robust is None:
            return
        trained = row.get("train_robust_accuracy")
        ramped = self.epoch >= self.config.ramp_epochs and self.trainer.adversarial
        if ramped and trained is not None and trained - robust > 2 * self.config.collapse_drop and not self.gap_seen:
            self.gap_seen = True
            message = (f"accuracy against the training attack ({trained:.3f}) is far above held-out PGD accuracy "
                       f"({robust:.3f}) at epoch {self.epoch}: the training attack is too weak for this model "
                       "(catastrophic overfitting or gradient masking); try more attack steps or pgd-at")
            logger.warning(message)
            self.warnings.append(message)
        if self.best is None or robust > self.best[1]:
            self.best = (self.epoch, robust, _copy(self.model.state_dict()) if self.keep_best else {})
        elif robust < self.best[1] - self.config.collapse_drop:
            kept = f"; the weights of epoch {self.best[0]} are kept" if self.keep_best else ""
            message = (f"held-out PGD accuracy fell from {self.best[1]:.3f} (epoch {self.best[0]}) to {robust:.3f} "
                       f"(epoch {self.epoch}): catastrophic overfitting{kept}")
            logger.warning(message)
            self.warnings.append(message)

    def _snapshot(self) -> dict[str, Any]:
        best = None if self.best is None else {"epoch": self.best[0], "robust": self.best[1], "model": self.best[2]}
        return {"format": 1, "epoch": self.epoch, "seconds": self.seconds, "config": asdict(self.config),
                "method": self.trainer.name, "trainer": plain_settings(self.trainer.settings()),
                "threat": self.threat.describe() if self.threat is not None else None, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "world_size": self.world.size, "trainer_state": dict(self.state), "history": self.history,
                "best": best, "warnings": self.warnings}

    def _restore(self, saved: dict[str, Any]) -> None:
        if saved.get("method") != self.trainer.name:
            raise InputError(f"the checkpoint was written by method {saved.get('method')!r}, not {self.trainer.name!r}")
        check_same_settings(saved, {**asdict(self.config), **plain_settings(self.trainer.settings()),
                                    "eps/norm": self.threat.describe() if self.threat is not None else None})
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        self.state = {k: v.to(self.device) for k, v in saved["trainer_state"].items()}
        self.history, self.warnings = list(saved["history"]), list(saved["warnings"])
        self.epoch, self.seconds = int(saved["epoch"]), float(saved["seconds"])
        before = int(saved.get("world_size", 1))
        if before != self.world.size:  # the sampler follows from the epoch; the schedule from the step count
            self.schedule.last_epoch = self.epoch * self.steps_per_epoch
            logger.warning("resuming a run of %d process(es) on %d: the effective batch size changes from %d to %d",
                           before, self.world.size, before * self.config.batch_size,
                           self.world.size * self.config.batch_size)
        best = saved.get("best")
        self.best = None if best is None else (int(best["epoch"]), float(best["robust"]), best["model"])
        logger.info("resumed after epoch %d of %d", self.epoch, self.config.epochs)


def _load_on_main(path: Path) -> dict[str, Any]:
    """Rank 0 reads the checkpoint (only its machine need have it) and sends it to the others; errors too."""
    if not distributed.world().active:
        return load_checkpoint(path)
    state, error = None, None
    if distributed.is_main():
        try:
            state = load_checkpoint(path)
        except InputError as caught:
            error = str(caught)
    state, error = distributed.broadcast_object((state, error))
    if error is not None or state is None:
        raise InputError(error or f"cannot read checkpoint {path}")
    return state


def _copy(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _accumulate(totals: dict[str, float], out: StepOutput, y: Tensor) -> None:
    n = float(len(y))
    totals["loss"] += float(out.loss) * n
    totals["n"] += n
    for key, logits in (("clean", out.logits), ("robust", out.adv_logits)):
        if logits is not None:
            totals[key] += float((logits.argmax(1) == y).sum())
            totals[f"n_{key}"] += n


def _accuracies(totals: dict[str, float], short: bool = False) -> dict[str, Any]:
    names = {"clean": "acc", "robust": "rob"} if short else {"clean": "clean_accuracy", "robust": "robust_accuracy"}
    values = {names[k]: totals[k] / totals[f"n_{k}"] for k in ("clean", "robust") if totals[f"n_{k}"]}
    return {k: f"{v:.3f}" for k, v in values.items()} if short else values
