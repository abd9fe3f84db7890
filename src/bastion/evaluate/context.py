"""The state an evaluation carries from stage to stage: the narrow interface every stage reads and writes.

A stage reads the model, data and threat model; which points are correct (`correct`) and still robust
(`robust`, the per-sample worst case over every attack so far) with their clean `predictions`; the
results of the stages before it, by type (`earlier`, `all_earlier`); and takes its random numbers
from `generator`, a stream derived from the run seed and the stage's name. It writes only `robust`
(points it broke), `warnings` and the gallery's `examples` (`keep_examples`). The runner sets `stage`
and saves the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from bastion.data import ImageSet
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
    that no attack run so far has broken at the threat model's eps (the per-sample worst case).
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

    def batches(self, indices: Tensor, description: str) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """(indices, x, y) for the given points, on the model's device and dtype, with a progress bar in points."""
        bar = tqdm(total=int(indices.numel()), desc=description, unit="pt", disable=not self.progress, leave=False)
        with bar:
            for chunk in torch.split(indices, self.batch_size):
                x, y = self.data.batch(chunk, device=self.device, dtype=self.dtype)
                yield chunk, x, y
                bar.update(int(chunk.numel()))

    def keep_examples(
        self, indices: Tensor, x: Tensor, x_adv: Tensor, y: Tensor, adv_predictions: Tensor, fooled: Tensor, attack: str
    ) -> None:
        """Keep broken points for the gallery, preferring labels not shown yet."""
        if len(self.examples) >= 4 * self.gallery_size:
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
            if len(self.examples) >= 4 * self.gallery_size:
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


def stream_seed(seed: int, stage: str, stream: str = "") -> int:
    """A 63-bit seed for the random stream `stream` of stage `stage` in a run seeded with `seed`."""
    digest = hashlib.sha256(f"{seed}/{stage}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
