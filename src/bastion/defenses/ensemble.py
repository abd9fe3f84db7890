"""Model ensembles as one classifier: mean of logits, mean of probabilities, or majority vote."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bastion.defenses.base import Defense, shattered
from bastion.errors import InputError
from bastion.registry import Registry

__all__ = ["MODES", "Ensemble"]

#: How members combine: each mode maps the members' stacked outputs (M, B, K) to one (B, K) output.
MODES: Registry[Tensor] = Registry("ensemble mode")


@MODES.register("logits")
def mean_logits(outputs: Tensor) -> Tensor:
    """The mean of the members' logits."""
    return outputs.mean(0)


@MODES.register("probs")
def mean_probs(outputs: Tensor) -> Tensor:
    """The log of the mean of the members' softmax probabilities (log-probabilities, usable as logits)."""
    return torch.logsumexp(torch.log_softmax(outputs, dim=2), dim=0) - math.log(outputs.shape[0])


@MODES.register("vote")
def vote(outputs: Tensor) -> Tensor:
    """The log of each class's share of the members' votes, ties broken by the mean probabilities.

    Votes have no gradient: the backward pass goes through the "probs" output (BPDA).
    """
    votes = outputs.detach().argmax(2).t()  # (B, M)
    return shattered(mean_probs(outputs), lambda lp: _vote_scores(votes, lp.exp()))


class Ensemble(Defense):
    """Several classifiers combined into one, attacked as one model (the attack sees the combined output).

    - "logits": the mean of the members' logits.
    - "probs": the log of the mean of their softmax probabilities (log-probabilities, usable as logits).
    - "vote": the log of each class's share of the members' votes, ties broken by the mean
      probabilities. Votes have no gradient; BPDA uses the "probs" output in the backward pass.

    Tramèr et al. (ICLR 2018, arXiv:1705.07204) and He et al. (WOOT 2017, arXiv:1706.04701) show
    that ensembles of weak defenses are not much stronger than their strongest member; the report
    puts the ensemble's robust accuracy next to each member's.

    Args:
        models: The members, each mapping images to logits over the same classes.
        mode: A name in `MODES`: "logits", "probs" or "vote".
        names: A name per member, for reports (default member-0, member-1, ...).
    """

    name: ClassVar[str] = "ensemble"
    stage: ClassVar[str] = "model"

    def __init__(self, models: Sequence[nn.Module], mode: str = "logits", names: Sequence[str] | None = None) -> None:
        super().__init__()
        if len(models) < 1 or not all(isinstance(m, nn.Module) for m in models):
            raise InputError("an ensemble needs at least one model")
        self.combine = MODES.get(mode)  # an unknown mode: one line listing the registered ones
        names = [f"member-{i}" for i in range(len(models))] if names is None else list(names)
        if len(names) != len(models):
            raise InputError(f"{len(names)} names for {len(models)} ensemble members")
        self.members = nn.ModuleList(models)
        self.names = names
        self.mode = mode
        self.differentiable = mode != "vote"
        self.bpda = "probs" if mode == "vote" else "exact"

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"mode": self.mode, "members": list(self.names)}

    def _outputs(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members])  # (M, B, K)

    def forward(self, x: Tensor) -> Tensor:
        """Combined scores (B, K) for images `x`."""
        return self.combine(self._outputs(x))

    def approx(self, x: Tensor) -> Tensor:
        """Differentiable stand-in: log of the mean probabilities."""
        return self.forward(x) if self.mode != "vote" else mean_probs(self._outputs(x))


def _vote_scores(votes: Tensor, probabilities: Tensor) -> Tensor:
    """Log of each class's vote share (B, K); a 1e-3 share of the mean probabilities breaks ties."""
    m = votes.shape[1]
    counts = torch.zeros_like(probabilities).scatter_add_(1, votes, torch.ones_like(votes, dtype=probabilities.dtype))
    return ((counts + 1e-3 * probabilities) / (m + 1e-3)).clamp_min(1e-12).log()

