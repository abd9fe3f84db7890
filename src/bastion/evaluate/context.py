"""The state an evaluation carries from stage to stage: the narrow interface every stage reads and writes.

A stage reads the model, data and threat model; which points are correct (`correct`) and still robust
(`robust`, the per-sample worst case over every attack so far) with their clean `predictions`; the
results of the stages before it, by type (`earlier`, `all_earlier`). It iterates over points with
`batches` (chunks shared among torchrun's processes, each with its own random streams: see
`bastion.evaluate.shards`) and takes stage-wide random numbers from `generator`, a stream derived
from the run seed and the stage's name. It writes only `robust` (points it broke), `warnings` and
the gallery's `examples` (`keep_examples`). The runner sets `stage` and saves the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from bastion.data import ImageSet
from bastion.evaluate.shards import Shard, stream_seed
from bastion.threat import ThreatModel

__all__ = ["EvalContext", "Example", "stream_seed"]

R = TypeVar("R")


@dataclass(frozen=True)
class Example:
    """An adversarial example kept for the report's gallery (tensors on the CPU)."""

    index: int
    x: Tensor
    x_adv: Tensor
    label: int
    clean_prediction: int
    adversarial_prediction: int
    attack: str


@dataclass
class EvalContext:
    """Model, data and threat model, plus what the stages have learned so far.

    `correct` marks the points the model classifies correctly without attack; `robust` the points
    that no attack run so far has broken at the threat model's eps (the per-sample worst case);
    `broken_at` the smallest radius at which an adversarial example of the point is known (+inf
    where none is: `bastion.evaluate.shrink`).
    """

    model: nn.Module
    data: ImageSet
    threat: ThreatModel
    device: torch.device
    dtype: torch.dtype
    batch_size: int = 256
    seed: int = 0
    progress: bool = False
    gallery_size: int = 8
    predictions: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    correct: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.bool))
    robust: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.bool))
    broken_at: Tensor = field(default_factory=lambda: torch.empty(0))
    examples: list[Example] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stage: str = ""
    results: dict[str, Any] = field(default_factory=dict)

    def generator(self, stream: str = "") -> torch.Generator:
        """A CPU generator of the running stage, seeded by (run seed, stage name, `stream`).

        Streams are names, not numbers, so no two stages (nor two parts of one stage) can share draws
        by accident, and a stage's draws do not depend on which stages ran before it.
        """
        return torch.Generator().manual_seed(stream_seed(self.seed, self.stage, stream))

    def earlier(self, kind: type[R]) -> R | None:
        """The first earlier stage result of type `kind` (a `ChecksResult`, say), or None when none ran."""
        return next((r for r in self.results.values() if isinstance(r, kind)), None)

    def all_earlier(self, kind: type[R]) -> list[R]:
        """Every earlier stage result of type `kind`, in run order."""
        return [r for r in self.results.values() if isinstance(r, kind)]

    def batches(self, indices: Tensor, description: str, *, replicated: bool = False) -> Shard:
        """The given points in chunks of `batch_size`: this process's share under torchrun, all of them otherwise.

        Iterating yields `Batch`es (global indices, images and labels on the model's device and
        dtype, a generator per chunk) with a progress bar in points; after the loop, `merge` the
        per-point tensors written (see `bastion.evaluate.shards`). `replicated`: every process runs
        every chunk (cheap probes whose counts every process needs).
        """
        return Shard(self, indices, description, replicated=replicated)

    @property
    def example_budget(self) -> int:
        """How many adversarial examples are kept for the gallery to choose from."""
        return 4 * self.gallery_size

    def keep_examples(
        self, indices: Tensor, x: Tensor, x_adv: Tensor, y: Tensor, adv_predictions: Tensor, fooled: Tensor, attack: str
    ) -> None:
        """Keep broken points for the gallery, preferring labels not shown yet."""
        if len(self.examples) >= self.example_budget:
            return
        for row in fooled.nonzero().squeeze(1).tolist():
            index = int(indices[row])
            self.examples.append(
                Example(
                    index=index,
                    x=x[row].detach().float().cpu(),
                    x_adv=x_adv[row].detach().float().cpu(),
                    label=int(y[row]),
                    clean_prediction=int(self.predictions[index]),
                    adversarial_prediction=int(adv_predictions[row]),
                    attack=attack,
                )
            )
            if len(self.examples) >= self.example_budget:
                return

    def gallery(self) -> list[Example]:
        """Up to `gallery_size` kept examples, one per label first, in data order."""
        chosen: list[Example] = []
        seen: set[int] = set()
        for example in sorted(self.examples, key=lambda e: e.index):
            if example.label not in seen and len(chosen) < self.gallery_size:
                chosen.append(example)
                seen.add(example.label)
        rest = [e for e in sorted(self.examples, key=lambda e: e.index) if e not in chosen]
        chosen.extend(rest[: self.gallery_size - len(chosen)])
        return sorted(chosen, key=lambda e: e.index)

