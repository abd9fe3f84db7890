"""Training an adversarial patch as a stage: the patch's pixels and mask are its result, so a resumed run keeps it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bastion.attacks.patch import AdversarialPatch, Patch
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.splits import training_set

__all__ = ["PatchFitResult", "PatchFitSettings", "PatchFitStage"]


@dataclass(frozen=True)
class PatchFitSettings:
    """Attributes: the training data (None: the first half of the points); the patch and its optimization.

    `train_data`, `train_limit`, `train_subset_seed` and `data_root` load a separate training set;
    `size`, `shape`, `steps`, `train_batch` and `lr` are `AdversarialPatch`'s; `target` makes it targeted.
    """

    train_data: str | None = None
    train_limit: int | None = None
    train_subset_seed: int | None = None
    data_root: str | None = None
    size: float = 0.1
    shape: str = "square"
    target: int | None = None
    steps: int = 500
    train_batch: int = 64
    lr: float = 0.05

    def __post_init__(self) -> None:
        self.trainer()  # refuses a bad size, shape, steps, batch or learning rate in one line
        if self.target is not None and (isinstance(self.target, bool) or self.target < 0):
            raise InputError(f"--target must be a class index >= 0, got {self.target!r}")

    def trainer(self) -> AdversarialPatch:
        """The patch trainer these settings describe."""
        return AdversarialPatch(size=self.size, shape=self.shape, steps=self.steps, batch_size=self.train_batch,
                                lr=self.lr)


@dataclass(frozen=True)
class PatchFitResult(StageResult):
    """The trained patch and how training went.

    Attributes:
        pixels: (C, P, P) nested lists, values in [0, 1].
        mask: (1, P, P) nested lists of 0 and 1.
        shape: square or circle.
        target: The targeted class, or None.
        side: P, the patch's side in pixels.
        area: Share of the image area its mask covers.
        train_data: Name of the training set; n_train its size.
        settings: The trainer's hyperparameters.
        history: Mean objective every tenth step.
        seconds: Training time; passes: the model passes it took.
    """

    pixels: list[Any]
    mask: list[Any]
    shape: str
    target: int | None
    side: int
    area: float
    train_data: str
    n_train: int
    settings: dict[str, Any]
    history: list[float]
    seconds: float
    passes: dict[str, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", json.loads(json.dumps(self.settings, default=str)))

    def patch(self, device: torch.device, dtype: torch.dtype) -> Patch:
        """The patch as tensors on `device` in `dtype`."""
        pixels = torch.tensor(self.pixels, device=device, dtype=dtype)
        mask = torch.tensor(self.mask, device=device, dtype=dtype)
        return Patch(pixels, mask, self.shape, self.target)


@STAGES.register("patch-fit")
class PatchFitStage(Stage):
    """Brown et al.'s adversarial patch (2017, arXiv:1712.09665), trained by expectation over transformation."""

    kind = "patch-fit"
    Settings = PatchFitSettings
    Result = PatchFitResult
    settings: PatchFitSettings

    def run(self, ctx: EvalContext) -> PatchFitResult:
        """Train the patch on the training images."""
        s = self.settings
        train = training_set(ctx, s.train_data, limit=s.train_limit, subset_seed=s.train_subset_seed, root=s.data_root)
        if s.target is not None and not s.target < train.num_classes:
            raise InputError(f"--target must be a class in [0, {train.num_classes}), got {s.target}")
        x, y = train.batch(slice(None), device=ctx.device, dtype=ctx.dtype)
        trainer = s.trainer()
        fit = trainer.fit(ctx.model, x, y, target=s.target, generator=ctx.generator("fit"))
        patch = fit.patch
        return PatchFitResult(
            pixels=patch.pixels.cpu().tolist(), mask=patch.mask.cpu().tolist(), shape=patch.shape,
            target=patch.target, side=patch.side, area=float(patch.mask.sum()) / (x.shape[-1] * x.shape[-2]),
            train_data=train.name, n_train=len(train), settings=trainer.settings(), history=list(fit.history),
            seconds=fit.seconds, passes=asdict(fit.passes))

    @classmethod
    def headline(cls, result: PatchFitResult) -> str:
        """The patch's size and what it was trained on."""
        kind = "untargeted" if result.target is None else f"targeted at class {result.target}"
        return (f"{kind} {result.shape} patch, {result.side}x{result.side} px ({result.area:.1%} of the image), "
                f"trained on {result.n_train} images")
