"""The guard run on every request: prediction, confidence signals, conformal p-values, probes, policy.

Detector scores become conformal p-values against clean calibration scores (Vovk et al. 2005;
Angelopoulos & Bates 2021, arXiv:2107.07511; see `bastion.serve.conformal`), so the share of clean
inputs flagged is at most the configured rate. The probes (input-gradient norm, a DeepFool
distance estimate) are optional; the randomized-smoothing fallback (Cohen et al. 2019,
arXiv:1902.02918) runs only on the inputs the policy sends to it, and decides sequentially
(`bastion.certify.sequential.certify_sequential`, Voracek & Hein 2024, arXiv:2406.17830): noise is
drawn in growing rounds until an anytime-valid test shows the top class has probability > 1/2
(or the budget is spent: abstain), so a clear input costs a few dozen passes, not the whole budget.
Each stage's time is returned for the latency metrics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bastion.certify import image_generator
from bastion.certify.sequential import certify_sequential
from bastion.detect import Detector, score_batches
from bastion.errors import InputError
from bastion.passes import attack_mode, model_device_dtype
from bastion.serve.combined import MinRankCombiner
from bastion.serve.config import GuardSettings
from bastion.serve.conformal import ConformalScores, bonferroni_level
from bastion.serve.policy import ABSTAIN, Decision, Policy
from bastion.serve.signals import detector_scores, probe_batches, probe_scores

__all__ = ["Guard", "GuardBatch", "Verdict", "input_hash", "input_hashes", "output_signals"]


def input_hash(x: Tensor) -> str:
    """sha256 of one input's float32 bytes (hex, first 16 characters): the request log's key."""
    return input_hashes(x[None])[0]


def input_hashes(x: Tensor) -> list[str]:
    """`input_hash` of each input of a batch (B, C, H, W), with one copy to the CPU for the batch."""
    data = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return [hashlib.sha256(row.tobytes()).hexdigest()[:16] for row in data]


def output_signals(logits: Tensor) -> dict[str, Tensor]:
    """Confidence (top softmax probability), logit margin (top-1 minus top-2) and entropy (nats), each (B,) float64.

    Computed in numpy: a batch's few logits cost less there than a dozen torch operations.
    """
    z = logits.detach().double().cpu().numpy()
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    top2 = np.partition(z, z.shape[1] - 2, axis=1)[:, -2:]  # the two largest, the largest last
    return {"confidence": torch.from_numpy(p.max(axis=1)), "margin": torch.from_numpy(top2[:, 1] - top2[:, 0]),
            "entropy": torch.from_numpy(-(p * log_p).sum(axis=1))}


@dataclass(frozen=True)
class Verdict:
    """The guard's answer for one input (see `Policy` for `outcome`)."""

    outcome: str
    label: int | None
    reason: str
    model_label: int
    confidence: float
    margin: float
    entropy: float
    scores: dict[str, float]
    p_values: dict[str, float]
    flagged_by: tuple[str, ...]
    input_hash: str
    gradient_norm: float | None = None
    boundary_distance: float | None = None
    smoothed_label: int | None = None
    smoothing_samples: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (a shallow copy: `asdict`'s deep copy costs more than the rest of a response)."""
        out = {name: getattr(self, name) for name in _FIELDS}
        out.update(flagged_by=list(self.flagged_by), scores=dict(self.scores), p_values=dict(self.p_values))
        return out


_FIELDS = tuple(f.name for f in fields(Verdict))


@dataclass(frozen=True)
class GuardBatch:
    """Verdicts for a batch and the seconds each stage took."""

    verdicts: list[Verdict]
    seconds: dict[str, float] = field(default_factory=dict)


class Guard:
    """A classifier, its calibrated detectors and the policy; `run` guards a batch.

    Build it with `Guard.calibrate`. Every signal enters the decision: each detector's score and,
    when enabled, the gradient-norm and boundary-distance probes (`bastion.serve.signals`). Each
    gets its own conformal p-value (reported, and watched by the guarantee monitor), and the decision
    reads one combined p-value, the full-conformal minimum rank over the signals
    (`bastion.serve.combined`), flagged at <= fpr: P(flagged | clean) <= fpr for clean inputs
    exchangeable with the calibration set, with the whole rate spent (not split by Bonferroni).

    Args:
        model: Images (B, C, H, W) in [0, 1] to logits (B, K).
        detectors: The detectors, in the order of `conformal`.
        conformal: Each detector's clean calibration scores.
        settings: Guard settings.
        num_classes: K.
        reference: Clean calibration "confidence" and "margin" values (for the drift monitor).
        probes: Clean calibration scores of the enabled probes ("gradient-norm", "boundary-distance").
        combiner: The signals' joint calibration scores (n, m), in the order of `signals`.
    """

    def __init__(self, model: nn.Module, detectors: Sequence[Detector], conformal: Sequence[ConformalScores],
                 settings: GuardSettings, num_classes: int, reference: dict[str, Tensor],
                 probes: Sequence[ConformalScores] = (), *, combiner: MinRankCombiner) -> None:
        if len(detectors) != len(conformal) or not detectors:
            raise InputError("the guard needs one calibration per detector, and at least one detector")
        if settings.fallback.startswith("label:") and int(settings.fallback.split(":")[1]) >= num_classes:
            raise InputError(f"fallback {settings.fallback} names no class of a {num_classes}-class model")
        self.model, self.detectors, self.conformal = model, list(detectors), list(conformal)
        self.settings, self.num_classes, self.reference = settings, num_classes, reference
        self.probes = list(probes)
        enabled = {"gradient-norm"} if settings.gradient_norm else set()
        enabled |= {"boundary-distance"} if settings.boundary_steps > 0 else set()
        if enabled != {p.name for p in self.probes}:
            raise InputError(f"the guard needs calibration scores of exactly the enabled probes {sorted(enabled)}, "
                             f"got {sorted(p.name for p in self.probes)}")
        if tuple(combiner.scores.shape) != (self.signals[0].n, len(self.signals)):
            raise InputError(f"the combined calibration scores {tuple(combiner.scores.shape)} do not match "
                             f"{len(self.signals)} signals of {self.signals[0].n} points")
        self.combiner = combiner
        flag_level = bonferroni_level(settings.fpr, self.signals[:1])  # one combined p-value: the whole rate
        self.policy = Policy(settings, flag_level, settings.reject_fpr)
        self.device, self.dtype = model_device_dtype(model)
        model.eval()  # served for inference only: no mode switch per batch

    @classmethod
    def calibrate(cls, model: nn.Module, detectors: Sequence[Detector], x_clean: Tensor, settings: GuardSettings,
                  *, batch_size: int = 256) -> Guard:
        """Score clean images (N, C, H, W) in [0, 1] with each detector and the model's outputs."""
        device, dtype = model_device_dtype(model)
        x_clean = x_clean.to(device, dtype)
        raw = [score_batches(d, model, x_clean, batch_size).detach().double().cpu() for d in detectors]
        conformal = [ConformalScores.fit(d.name, s) for d, s in zip(detectors, raw, strict=True)]
        with attack_mode(model), torch.no_grad():
            logits = torch.cat([model(chunk) for chunk in torch.split(x_clean, batch_size)])
        signals = output_signals(logits)
        reference = {"confidence": signals["confidence"].cpu(), "margin": signals["margin"].cpu()}
        probed = probe_batches(model, x_clean, settings, batch_size)
        probes = [ConformalScores.fit(name, s) for name, s in probed.items()]
        # The joint scores, row i for calibration image i (the sorted copies above lose the pairing).
        joint = torch.stack([*raw, *probed.values()], dim=1)
        return cls(model, detectors, conformal, settings, int(logits.shape[1]), reference, probes,
                   combiner=MinRankCombiner(joint))

    @property
    def signals(self) -> list[ConformalScores]:
        """Calibration of every signal in the decision: the detectors', then the probes'."""
        return [*self.conformal, *self.probes]

    @property
    def flag_level(self) -> float:
        """The combined p-value's level of a flag (fpr); the guarantee monitor tests each signal at it too."""
        return self.policy.flag_level

    def monitored_levels(self) -> list[float]:
        """p-value levels the guarantee monitor tests: the flag level first, the reject level, then 0.1 and 0.25."""
        levels = [self.flag_level]
        for level in (self.policy.reject_level, 0.1, 0.25):
            if level is not None and level not in levels and level >= self.signals[0].smallest_level():
                levels.append(level)
        return levels

    def summary(self) -> dict[str, Any]:
        """Calibration and policy, for the status page and the model metadata route."""
        return {"fpr": self.settings.fpr, "flag_level": self.flag_level, "reject_level": self.policy.reject_level,
                "combination": f"full-conformal minimum rank over {len(self.signals)} signals",
                "on_flag": self.settings.on_flag, "fallback": self.settings.fallback,
                "calibration": self.settings.calibration,
                "detectors": {**{c.name: {**c.summary(), "settings": repr(d)}
                                 for d, c in zip(self.detectors, self.conformal, strict=True)},
                              **{c.name: {**c.summary(), "settings": "probe"} for c in self.probes}},
                "probes": {"gradient_norm": self.settings.gradient_norm,
                           "boundary_steps": self.settings.boundary_steps,
                           "smoothing": self.settings.uses_smoothing}}

    def run(self, x: Tensor, *, drifted: bool = False) -> GuardBatch:
        """Guard a batch (B, C, H, W) in [0, 1] (already validated): one `Verdict` per input.

        `drifted`: the guarantee no longer holds, so the policy's `on_drift` applies to every input.
        The smoothed prediction is computed only for the inputs the policy sends to it (every input
        with `smoothing_always`).
        """
        seconds: dict[str, float] = {}
        x = x.to(self.device, self.dtype)
        start = time.perf_counter()
        # The model is frozen in eval mode once (`__init__`); attack_mode only if someone put it back in training.
        with attack_mode(self.model) if self.model.training else nullcontext(), torch.no_grad():
            logits, scores = detector_scores(self.model, x, self.detectors)
        seconds["model"] = time.perf_counter() - start  # one pass: the model and every detector
        scores.update(probe_scores(self.model, x, self.settings, seconds))
        names = [c.name for c in self.signals]
        each, p_combined = self.combiner.all_p_values(torch.stack([scores[name].double() for name in names], dim=1))
        # Python lists once per batch: indexing tensors item by item costs more than the rest of a small batch.
        signals = {k: v.tolist() for k, v in output_signals(logits).items()}
        labels, combined = logits.argmax(dim=1).tolist(), p_combined.tolist()
        values = {k: v.tolist() for k, v in scores.items()}
        hashes = input_hashes(x)
        p_items = [dict(zip(names, row, strict=True)) for row in each.tolist()]  # each signal's conformal p-value
        decisions = [self._decide(labels[i], p_items[i], combined[i], drifted) for i in range(len(x))]
        wanted = list(range(len(x))) if self.settings.smoothing_always else [i for i, d in enumerate(decisions)
                                                                             if d.smooth]
        smoothed, samples = self._smoothed(x, hashes, wanted, seconds) if wanted else ({}, {})
        verdicts = []
        for i in range(len(x)):
            decision = decisions[i]
            if decision.smooth:
                decision = self._decide(labels[i], p_items[i], combined[i], drifted, smoothed[i])
            verdicts.append(Verdict(
                outcome=decision.outcome, label=decision.label, reason=decision.reason, model_label=labels[i],
                confidence=signals["confidence"][i], margin=signals["margin"][i], entropy=signals["entropy"][i],
                scores={k: v[i] for k, v in values.items()}, p_values={**p_items[i], "combined": combined[i]},
                flagged_by=decision.flagged_by, input_hash=hashes[i],
                gradient_norm=values["gradient-norm"][i] if "gradient-norm" in values else None,
                boundary_distance=-values["boundary-distance"][i] if "boundary-distance" in values else None,
                smoothed_label=smoothed.get(i), smoothing_samples=samples.get(i)))
        return GuardBatch(verdicts, seconds)

    def _decide(self, label: int, p_values: dict[str, float], combined: float, drifted: bool,
                smoothed: int | None = None) -> Decision:
        """The policy on the combined p-value; a flag names the signals of smallest p-value, which drove it."""
        decision = self.policy.decide(label, {"combined": combined}, smoothed, drifted=drifted)
        if not decision.flagged_by:
            return decision
        lowest = min(p_values.values())
        return dataclasses.replace(decision, flagged_by=tuple(k for k, p in p_values.items() if p == lowest))

    def _smoothed(self, x: Tensor, hashes: list[str], rows: list[int],
                  seconds: dict[str, float]) -> tuple[dict[int, int], dict[int, int]]:
        """The smoothed prediction (or ABSTAIN) of the inputs `rows` only, and the noise samples each took.

        With probability at least 1 - smoothing_alpha per input, a prediction other than ABSTAIN is
        the class the smoothed classifier returns at that input (its probability under the noise is
        > 1/2), whenever the sequential test stopped.
        """
        if not self.settings.uses_smoothing:
            return {i: ABSTAIN for i in rows}, {}
        start = time.perf_counter()
        # Noise seeded by the input itself: resending an input cannot re-roll the smoothed answer.
        generators = [image_generator(self.settings.seed, int(hashes[i], 16), x.device) for i in rows]
        s = self.settings
        certificates = certify_sequential(
            self.model, x[rows], num_classes=self.num_classes, sigma=s.smoothing_sigma, radii=[], n0=s.smoothing_n0,
            budget=s.smoothing_n, alpha=s.smoothing_alpha, batch_size=max(s.smoothing_n, s.smoothing_n0),
            generators=generators, first=min(32, s.smoothing_n), growth=2.0)
        seconds["smoothing"] = time.perf_counter() - start
        return ({i: c.prediction for i, c in zip(rows, certificates, strict=True)},
                {i: c.samples for i, c in zip(rows, certificates, strict=True)})
