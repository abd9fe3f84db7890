"""Learning a universal perturbation as a stage: the perturbation is its result, so a resumed run keeps it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from bastion.attacks.universal import METHODS, UniversalPerturbation, UniversalResult
from bastion.errors import InputError
from bastion.evaluate.context import EvalContext
from bastion.evaluate.stage import STAGES, Stage, StageResult
from bastion.evaluate.stages.splits import training_set
from bastion.evaluate.validation import check_fraction, check_int, check_positive
from bastion.passes import PassCount
from bastion.threat import ThreatModel

__all__ = ["UniversalFitResult", "UniversalFitSettings", "UniversalFitStage"]


@dataclass(frozen=True)
class UniversalFitSettings:
    """Attributes: the training data (None: the first half of the points); `UniversalPerturbation`'s options.

    Options left None take `UniversalPerturbation`'s defaults.
    """

    train_data: str | None = None
    train_limit: int | None = None
    data_root: str | None = None
    method: str = "uap"
    epochs: int | None = None
    target_fooling: float | None = None
    rel_step: float | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown universal method {self.method!r}; choose one of: {', '.join(METHODS)}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if self.target_fooling is not None:
            check_fraction("target_fooling", self.target_fooling)
        if self.rel_step is not None:
            check_positive("rel_step", self.rel_step)

    def learner(self) -> UniversalPerturbation:
        """The learner these settings describe."""
        options: dict[str, Any] = {"method": self.method, "epochs": self.epochs, "target_fooling": self.target_fooling,
                   "rel_step": self.rel_step, "batch_size": self.batch_size}
        return UniversalPerturbation(**{k: v for k, v in options.items() if v is not None})


@dataclass(frozen=True)
class UniversalFitResult(StageResult):
    """The learned perturbation and how learning went.

    Attributes:
        delta: (C, H, W) nested lists: the perturbation, inside the threat model's ball.
        method: uap or sgd; settings: the learner's repr.
        train_data: Name of the training set.
        train_fooling_rate, history, n_train, passes, seconds: As in `UniversalResult`.
    """

    delta: list[Any]
    method: str
    settings: str
    train_data: str
    train_fooling_rate: float
    history: list[float]
    n_train: int
    passes: dict[str, int]
    seconds: float

    def universal(self, threat: ThreatModel, device: torch.device, dtype: torch.dtype) -> UniversalResult:
        """The perturbation as a `UniversalResult` on `device` in `dtype` (its `save` writes the files)."""
        delta = torch.tensor(self.delta, device=device, dtype=dtype)
        return UniversalResult(delta=delta, threat=threat, method=self.method,
                               train_fooling_rate=self.train_fooling_rate, history=tuple(self.history),
                               n_train=self.n_train, passes=PassCount(**self.passes), seconds=self.seconds)


@STAGES.register("universal-fit")
class UniversalFitStage(Stage):
    """One perturbation for every image, learned in the threat model's ball.

    Moosavi-Dezfooli et al. (CVPR 2017, arXiv:1610.08401): uap; Shafahi et al. (AAAI 2020,
    arXiv:1812.03705): sgd.
    """

    kind = "universal-fit"
    Settings = UniversalFitSettings
    Result = UniversalFitResult
    settings: UniversalFitSettings

    def run(self, ctx: EvalContext) -> UniversalFitResult:
        """Learn the perturbation on the training images."""
        s = self.settings
        train = training_set(ctx, s.train_data, limit=s.train_limit, root=s.data_root)
        if s.train_data is not None and train.fingerprint == ctx.data.fingerprint:
            raise InputError("--data and --eval-data hold the same images")
        x, y = train.batch(slice(0, len(train)), device=ctx.device, dtype=ctx.dtype)
        learner = s.learner()
        result = learner.fit(ctx.model, x, y, ctx.threat, generator=ctx.generator("shuffle"))
        return UniversalFitResult(
            delta=result.delta.detach().cpu().tolist(), method=result.method, settings=repr(learner),
            train_data=train.name, train_fooling_rate=result.train_fooling_rate, history=list(result.history),
            n_train=result.n_train, passes=asdict(result.passes), seconds=result.seconds)

    @classmethod
    def headline(cls, result: UniversalFitResult) -> str:
        """Training fooling rate."""
        return (f"{result.method}: fools {result.train_fooling_rate:.1%} of {result.n_train} training images "
                f"({result.train_data})")
