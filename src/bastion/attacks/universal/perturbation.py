"""Universal adversarial perturbations: one perturbation for every image, learned on one set, scored on another."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor, nn

from bastion._io import save_torch_atomic, write_atomic_with
from bastion.attacks.base import check_inputs
from bastion.attacks.universal.algorithms import apply, fit_sgd, fit_uap, predict
from bastion.errors import InputError
from bastion.passes import PassCount, PassCounter, attack_mode
from bastion.render.png import encode_png
from bastion.threat import ThreatModel

__all__ = ["METHODS", "UniversalPerturbation", "UniversalResult", "UniversalScore", "evaluate_universal",
           "fooling_rate"]

METHODS = ("uap", "sgd")


@dataclass(frozen=True)
class UniversalScore:
    """How one perturbation does on a set of images.

    Attributes:
        n: Images scored.
        fooling_rate: Share whose predicted label changes when the perturbation is added (the
            paper's P(k(x + v) != k(x))).
        clean_accuracy: Accuracy without the perturbation.
        perturbed_accuracy: Accuracy with it.
    """

    n: int
    fooling_rate: float
    clean_accuracy: float
    perturbed_accuracy: float


@dataclass(frozen=True)
class UniversalResult:
    """A learned universal perturbation.

    Attributes:
        delta: (C, H, W) the perturbation, inside `threat`'s ball.
        threat: The ball it was learned in.
        method: "uap" or "sgd".
        train_fooling_rate: Fooling rate on the training images of the epoch kept (the best one).
        history: Training fooling rate after each epoch.
        n_train: Training images.
        passes: Model passes spent learning it.
        seconds: Wall time of `fit`.
    """

    delta: Tensor
    threat: ThreatModel
    method: str
    train_fooling_rate: float
    history: tuple[float, ...]
    n_train: int
    passes: PassCount
    seconds: float

    def save(self, folder: str | Path, *, scale: int = 4) -> tuple[Path, Path]:
        """Write `universal.pt` (the tensor and its settings) and `universal.png` (amplified to the grey range).

        In the PNG mid grey is no change, black and white the largest decrease and increase. Both
        files are written atomically. Returns their paths.
        """
        folder = Path(folder)
        record = {"delta": self.delta.detach().cpu(), "norm": self.threat.norm.name, "eps": self.threat.eps,
                  "bounds": self.threat.bounds, "method": self.method, "train_fooling_rate": self.train_fooling_rate}
        tensor_path = save_torch_atomic(record, folder / "universal.pt")
        png = encode_png(_grey(self.delta, scale))

        def write(handle: IO[bytes]) -> None:
            handle.write(png)

        image_path = write_atomic_with(folder / "universal.png", write)
        return tensor_path, image_path


def _grey(delta: Tensor, scale: int) -> np.ndarray:
    array = delta.detach().to("cpu", torch.float64).numpy()
    peak = float(np.abs(array).max()) if array.size else 0.0
    values = np.full_like(array, 0.5) if peak == 0.0 else 0.5 + 0.5 * array / peak
    pixels = np.rint(values.clip(0, 1) * 255).astype(np.uint8)
    pixels = pixels[0] if pixels.shape[0] == 1 else pixels[:3].transpose(1, 2, 0)
    return np.ascontiguousarray(pixels.repeat(scale, axis=0).repeat(scale, axis=1))


class UniversalPerturbation:
    """Learn one perturbation that fools a model on most images (dataset-level; not a per-batch `Attack`).

    `method="uap"`: Moosavi-Dezfooli et al. (CVPR 2017, arXiv:1610.08401), DeepFool steps for the
    images not yet fooled, projected onto the ball. `method="sgd"`: Shafahi et al. (AAAI 2020,
    arXiv:1812.03705), minibatch ascent on a clipped cross-entropy; much cheaper per epoch.

    Args:
        method: "uap" or "sgd".
        epochs: Most passes over the training images (the paper's max_iter_uni); the perturbation
            kept is the one after the epoch that fooled the most training images.
        target_fooling: Stop once this training fooling rate is reached (the paper's 1 - delta, 0.8).
        overshoot: DeepFool's overshoot (uap).
        df_steps: DeepFool's most steps per image (uap).
        rel_step: Step size as a fraction of eps (sgd).
        loss_clip: The cap on the per-image cross-entropy (sgd).
        batch_size: Minibatch (sgd) or unfooled-check batch (uap) size.

    Example:
        >>> result = UniversalPerturbation(method="sgd").fit(model, x_train, y_train, ThreatModel("linf", 0.2))
        >>> evaluate_universal(model, result.delta, x_eval, y_eval).fooling_rate
    """

    def __init__(
        self, method: str = "uap", epochs: int = 10, target_fooling: float = 0.8, overshoot: float = 0.02,
        df_steps: int = 10, rel_step: float = 0.1, loss_clip: float = 10.0, batch_size: int = 128,
    ) -> None:
        self.method, self.epochs, self.target_fooling, self.overshoot = method, epochs, target_fooling, overshoot
        self.df_steps, self.rel_step, self.loss_clip, self.batch_size = df_steps, rel_step, loss_clip, batch_size

    def fit(
        self, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, *, generator: torch.Generator | None = None
    ) -> UniversalResult:
        """Learn the perturbation on the training images `x` (N, C, H, W) with labels `y` (N,)."""
        if self.method not in METHODS:
            raise InputError(f"unknown universal method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if threat.norm.name not in ("linf", "l2"):
            raise InputError(f"universal perturbations work in linf and l2, not {threat.norm.name}")
        if self.epochs < 1 or self.batch_size < 1 or not len(x):
            raise InputError("universal perturbation needs epochs >= 1, batch_size >= 1 and training images")
        check_inputs(x, y, threat)
        start = time.perf_counter()
        x = x.detach()
        with attack_mode(model):
            counter = PassCounter(model)
            clean = predict(counter, x, self.batch_size)
            if self.method == "uap":
                delta, history = fit_uap(counter, x, clean, threat, epochs=self.epochs,
                                         target_fooling=self.target_fooling, overshoot=self.overshoot,
                                         df_steps=self.df_steps, batch_size=self.batch_size, generator=generator)
            else:
                delta, history = fit_sgd(counter, x, y, clean, threat, epochs=self.epochs,
                                         target_fooling=self.target_fooling, rel_step=self.rel_step,
                                         loss_clip=self.loss_clip, batch_size=self.batch_size, generator=generator)
        delta = threat.norm.project(delta.detach().unsqueeze(0), threat.eps)[0]
        return UniversalResult(delta=delta, threat=threat, method=self.method,
                               train_fooling_rate=max(history, default=math.nan), history=tuple(history),
                               n_train=len(x), passes=counter.count, seconds=time.perf_counter() - start)

    def __repr__(self) -> str:
        return (f"UniversalPerturbation(method={self.method!r}, epochs={self.epochs}, "
                f"target_fooling={self.target_fooling}, overshoot={self.overshoot}, df_steps={self.df_steps}, "
                f"rel_step={self.rel_step}, loss_clip={self.loss_clip}, batch_size={self.batch_size})")


def evaluate_universal(
    model: nn.Module, delta: Tensor, x: Tensor, y: Tensor, *, bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 512,
) -> UniversalScore:
    """Score a perturbation (C, H, W) on images (N, C, H, W) it was not learned on, labels y (N,)."""
    if not len(x):
        raise InputError("evaluate_universal needs at least one image")
    if delta.shape != x.shape[1:]:
        raise InputError(f"perturbation shape {tuple(delta.shape)} does not match the images' {tuple(x.shape[1:])}")
    with attack_mode(model):
        clean = predict(model, x, batch_size)
        perturbed = predict(model, apply(x, delta.to(x.device, x.dtype), bounds), batch_size)
    return UniversalScore(n=len(x), fooling_rate=float((perturbed != clean).float().mean()),
                          clean_accuracy=float((clean == y).float().mean()),
                          perturbed_accuracy=float((perturbed == y).float().mean()))


def fooling_rate(model: nn.Module, delta: Tensor, x: Tensor, *, bounds: tuple[float, float] = (0.0, 1.0)) -> float:
    """Share of images (N, C, H, W) whose predicted label the perturbation (C, H, W) changes."""
    labels = torch.zeros(len(x), dtype=torch.long, device=x.device)
    return evaluate_universal(model, delta, x, labels, bounds=bounds).fooling_rate
