"""The two ways to learn one perturbation for a whole data set: UAP's DeepFool loop, and SGD on a clipped loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.attacks.universal._deepfool import deepfool_step
from bastion.threat import ThreatModel

__all__ = ["apply", "fit_sgd", "fit_uap", "predict"]


def apply(x: Tensor, delta: Tensor, bounds: tuple[float, float]) -> Tensor:
    """Add the universal perturbation (C, H, W) to every image of `x` and clip into the input box."""
    return (x + delta).clamp(*bounds)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Top-1 labels of `x`, in batches."""
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def _fooling(model: nn.Module, x: Tensor, delta: Tensor, clean: Tensor, threat: ThreatModel, batch: int) -> float:
    return float((predict(model, apply(x, delta, threat.bounds), batch) != clean).float().mean())


def fit_uap(
    model: nn.Module, x: Tensor, clean: Tensor, threat: ThreatModel, *, epochs: int, target_fooling: float,
    overshoot: float, df_steps: int, batch_size: int, generator: torch.Generator | None,
) -> tuple[Tensor, list[float]]:
    """Algorithm 1 of Moosavi-Dezfooli et al. (CVPR 2017, arXiv:1610.08401).

    Passes over the shuffled images; for each image x_i that x_i + v does not fool yet, adds the
    DeepFool step that sends x_i + v across the boundary (when DeepFool converges, as in the
    authors' code) and projects v back onto the eps-ball, v <- P(v + dv_i). Stops when the fooling
    rate on the training set reaches `target_fooling` (1 - delta in the paper) or after `epochs`.
    Which images are still unfooled is checked `batch_size` at a time; DeepFool then starts from
    the current v, so an image fooled meanwhile costs one pass and no step.

    Args:
        model: The classifier.
        x: (N, C, H, W) training images.
        clean: (N,) the model's labels for `x` (fooling means changing them).
        threat: The ball the perturbation lives in (l2 or linf).
        epochs: Most passes over the data.
        target_fooling: Stop once this share of training images is fooled.
        overshoot: DeepFool's overshoot.
        df_steps: DeepFool's most linearization steps per image.
        batch_size: Images per unfooled-check pass.
        generator: Shuffles the images.

    Returns:
        The perturbation (C, H, W) of the epoch that fooled the most training images, and the
        training fooling rate after each epoch.
    """
    delta, history = torch.zeros_like(x[0]), []
    best = delta
    num_classes = int(model(x[:1]).shape[1])
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator, device=_device(generator)).to(x.device)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            unfooled = index[predict(model, apply(x[index], delta, threat.bounds), batch_size) == clean[index]]
            for i in unfooled.tolist():
                point = apply(x[i : i + 1], delta, threat.bounds)
                step, crossed = deepfool_step(model, point, clean[i : i + 1], threat.norm.name, num_classes,
                                              steps=df_steps, overshoot=overshoot, bounds=threat.bounds)
                if bool(crossed[0]) and bool(step.any()):
                    delta = threat.norm.project(delta.unsqueeze(0) + step, threat.eps)[0]
        history.append(_fooling(model, x, delta, clean, threat, batch_size))
        if history[-1] >= max(history[:-1], default=-1.0):
            best = delta.clone()
        if history[-1] >= target_fooling:
            break
    return best, history


def fit_sgd(
    model: nn.Module, x: Tensor, y: Tensor, clean: Tensor, threat: ThreatModel, *, epochs: int,
    target_fooling: float, rel_step: float, loss_clip: float, batch_size: int, generator: torch.Generator | None,
) -> tuple[Tensor, list[float]]:
    """Stochastic gradient ascent on a clipped loss (Shafahi et al., AAAI 2020, arXiv:1812.03705).

    For each minibatch B: g = mean over B of grad_v min(CE(f(x + v), y), loss_clip), then
    v <- P(v + rel_step * eps * ascent(g)), ascent being the threat norm's steepest direction (the
    sign in Linf). Clipping the loss stops images that are already fooled from dominating the
    gradient, so the perturbation keeps working on the rest.

    Args:
        model: The classifier.
        x: (N, C, H, W) training images.
        y: (N,) their true labels.
        clean: (N,) the model's labels for `x`, for the fooling rate.
        threat: The ball the perturbation lives in.
        epochs: Most passes over the data.
        target_fooling: Stop once this share of training images is fooled (checked after each epoch).
        rel_step: Step size as a fraction of eps.
        loss_clip: The cap on the per-image cross-entropy (the paper's beta).
        batch_size: Minibatch size.
        generator: Shuffles the images.

    Returns:
        The perturbation (C, H, W) of the epoch that fooled the most training images, and the
        training fooling rate after each epoch.
    """
    delta, history = torch.zeros_like(x[0]), []
    best = delta
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator, device=_device(generator)).to(x.device)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            v = delta.clone().requires_grad_(True)
            loss = F.cross_entropy(model(apply(x[index], v, threat.bounds)), y[index], reduction="none")
            (grad,) = torch.autograd.grad(loss.clamp(max=loss_clip).mean(), v)
            step = rel_step * threat.eps * threat.norm.ascent(grad.unsqueeze(0))
            delta = threat.norm.project(delta.unsqueeze(0) + step, threat.eps)[0].detach()
        history.append(_fooling(model, x, delta, clean, threat, batch_size))
        if history[-1] >= max(history[:-1], default=-1.0):
            best = delta.clone()
        if history[-1] >= target_fooling:
            break
    return best, history


def _device(generator: torch.Generator | None) -> torch.device | None:
    return generator.device if generator is not None else None
