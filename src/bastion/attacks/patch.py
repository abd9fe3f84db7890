"""Adversarial patch (Brown, Mané, Roy, Abadi & Gilmer, 2017, arXiv:1712.09665).

One patch, a square or a disc covering a set share of the image, trained so that pasting it anywhere
on any image fools the model: Brown et al.'s expectation over transformation (their eq. 2,
p_hat = argmax_p E_{x~X, t~T, l~L} [log Pr(y_hat | A(p, x, l, t))]) averages the objective over
random images, positions, scales, rotations and brightness. The placement is a differentiable,
batched affine warp (`bastion.transforms`), so one forward pass trains on many placements. The
patch is no Lp perturbation: it has its own result types, is exported as a printable PNG at any
pixel size, and its success rate is measured with random placements on images it was not trained on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from bastion.errors import InputError
from bastion.losses import cw_margin
from bastion.passes import PassCount, PassCounter, attack_mode
from bastion.render.png import image_to_data_uri
from bastion.transforms import affine_theta, warp

__all__ = ["EOT", "AdversarialPatch", "Patch", "PatchEvaluation", "PatchFit", "evaluate_patch", "patch_gallery",
           "sample_placements"]

_SHAPES = ("square", "circle")


@dataclass(frozen=True)
class EOT:
    """The distribution of placements: uniform scale, rotation (degrees), brightness; a uniform position.

    The position is drawn so that the scaled, rotated patch stays inside the image.
    """

    scale: tuple[float, float] = (0.9, 1.1)
    max_angle: float = 22.5
    brightness: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise InputError(f"EOT scale must be a range (low, high) with 0 < low <= high, got {self.scale}")
        if not 0 <= self.brightness[0] <= self.brightness[1]:
            raise InputError(f"EOT brightness must be a range with 0 <= low <= high, got {self.brightness}")
        if not 0 <= self.max_angle <= 180:
            raise InputError(f"EOT max_angle must lie in [0, 180], got {self.max_angle}")

    @classmethod
    def position_only(cls) -> EOT:
        """Random position only: the patch as printed, pasted at a random place."""
        return cls(scale=(1.0, 1.0), max_angle=0.0, brightness=(1.0, 1.0))


def sample_placements(n: int, side: int, height: int, width: int, eot: EOT, generator: torch.Generator | None,
                      like: Tensor) -> Tensor:
    """(n, 5) random placements (angle, scale, tx, ty, brightness) of a `side`-pixel patch centred in the image."""
    device = generator.device if generator is not None else like.device
    u = torch.rand(n, 5, generator=generator, device=device, dtype=like.dtype).to(like.device)
    angle = (2 * u[:, 0] - 1) * eot.max_angle
    scale = eot.scale[0] + u[:, 1] * (eot.scale[1] - eot.scale[0])
    radians = angle * (math.pi / 180)
    half = scale * side / 2 * (torch.cos(radians).abs() + torch.sin(radians).abs())
    tx = (2 * u[:, 2] - 1) * (width / 2 - half).clamp(min=0)
    ty = (2 * u[:, 3] - 1) * (height / 2 - half).clamp(min=0)
    brightness = eot.brightness[0] + u[:, 4] * (eot.brightness[1] - eot.brightness[0])
    return torch.stack([angle, scale, tx, ty, brightness], dim=1)


@dataclass(frozen=True)
class Patch:
    """A patch: pixels (C, P, P) in [0, 1] and a 0/1 mask (1, P, P) of its shape."""

    pixels: Tensor
    mask: Tensor
    shape: str = "square"
    target: int | None = None

    @staticmethod
    def blank(channels: int, side: int, shape: str, like: Tensor, generator: torch.Generator | None = None) -> Patch:
        """A patch of uniform noise with the mask of `shape` ("square" or "circle")."""
        if shape not in _SHAPES:
            raise InputError(f"patch shape must be square or circle, got {shape!r}")
        device = generator.device if generator is not None else like.device
        pixels = torch.rand(channels, side, side, generator=generator, device=device, dtype=like.dtype).to(like.device)
        mask = torch.ones(1, side, side, device=like.device, dtype=like.dtype)
        if shape == "circle":
            centre = torch.arange(side, device=like.device, dtype=like.dtype) + 0.5 - side / 2
            mask = ((centre[:, None] ** 2 + centre[None, :] ** 2) <= (side / 2) ** 2).to(like.dtype)[None]
        return Patch(pixels, mask, shape)

    @property
    def side(self) -> int:
        """Side P of the patch in pixels."""
        return int(self.pixels.shape[-1])

    def footprint(self, placement: Tensor, height: int, width: int) -> Tensor:
        """(B, 1, H, W) share of each pixel the placed patch covers (0 = untouched)."""
        return self._warp(self.mask, placement, height, width)

    def paste(self, x: Tensor, placement: Tensor) -> Tensor:
        """Paste the patch on each image of `x` at its (angle, scale, tx, ty, brightness) placement.

        Alpha compositing with the warped mask: x (1 - m) + b * warp(p * m), clamped to [0, 1]; a pixel
        the patch does not cover (m = 0) keeps its value exactly.
        """
        height, width = int(x.shape[-2]), int(x.shape[-1])
        coverage = self.footprint(placement, height, width)
        colour = self._warp(self.pixels * self.mask, placement, height, width) * placement[:, 4, None, None, None]
        return (x * (1 - coverage) + colour).clamp(0.0, 1.0)

    def _warp(self, image: Tensor, placement: Tensor, height: int, width: int) -> Tensor:
        side = self.side
        if side > min(height, width):
            raise InputError(f"a {side}-pixel patch does not fit {height}x{width} images")
        top, left = (height - side) // 2, (width - side) // 2
        canvas = F.pad(image, (left, width - side - left, top, height - side - top))
        canvas = canvas.to(placement.dtype).expand(len(placement), -1, -1, -1)
        theta = affine_theta(placement[:, 0], placement[:, 2], placement[:, 3], height, width, scale=placement[:, 1])
        return warp(canvas, theta)

    def to_pil(self, size: int) -> object:
        """The patch as a Pillow image of `size` x `size` pixels (nearest-neighbour, so it prints crisp).

        A disc gets an alpha channel that is transparent outside it.
        """
        from PIL import Image

        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"PNG size must be a positive integer number of pixels, got {size!r}")
        values = np.rint(self.pixels.detach().float().cpu().clamp(0, 1).numpy() * 255).astype(np.uint8)
        alpha = np.rint(self.mask.detach().float().cpu().numpy()[0] * 255).astype(np.uint8)
        grey = values.shape[0] == 1
        layers = [values[0]] if grey else [values[c] for c in range(3)]
        if self.shape == "circle":
            layers.append(alpha)
        mode = {(True, False): "L", (True, True): "LA", (False, False): "RGB", (False, True): "RGBA"}[
            (grey, self.shape == "circle")]
        image = Image.fromarray(np.stack(layers, axis=-1) if len(layers) > 1 else layers[0], mode=mode)
        return image.resize((size, size), Image.Resampling.NEAREST)

    def save_png(self, path: str | Path, size: int = 300) -> Path:
        """Write the patch as a printable PNG of `size` x `size` pixels."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_pil(size).save(path, format="PNG")  # type: ignore[attr-defined]
        return path


@dataclass(frozen=True)
class PatchFit:
    """A trained patch and how training went (`history`: mean objective every tenth step)."""

    patch: Patch
    history: list[float]
    passes: PassCount
    seconds: float


@dataclass(frozen=True)
class PatchEvaluation:
    """The patch pasted at random places on held-out images.

    `success_rate` is the share of (image, placement) pairs fooled, over images the model classifies
    correctly without the patch (and, for a targeted patch, whose label is not the target): fooled
    means misclassified (untargeted) or classified as the target (targeted).
    """

    success_rate: float
    attacked: int
    placements: int
    clean_accuracy: float
    patched_accuracy: float
    success: Tensor = field(repr=False)


class AdversarialPatch:
    """Train a patch by expectation over transformation (Brown et al., 2017, eq. 2).

    Each step draws a minibatch of training images and one random placement per image, pastes the
    patch and takes an Adam step on its pixels (clipped to [0, 1]). The objective is the clamped
    Carlini-Wagner margin (untargeted: push the true class below another by `margin`; targeted: push
    the target `margin` above every other class), which stops pushing on images already fooled.

    Args:
        size: Share of the image area the patch covers (0.1 = 10%).
        shape: "square" or "circle".
        steps: Optimization steps.
        batch_size: Training images (one placement each) per step.
        lr: Adam's learning rate on pixel values.
        margin: Logit margin at which an image counts as fooled enough.
        eot: The placement distribution during training.

    Example:
        >>> fit = AdversarialPatch(size=0.1).fit(model, x_train, y_train, generator=torch.Generator().manual_seed(0))
        >>> evaluate_patch(model, fit.patch, x_test, y_test).success_rate
    """

    def __init__(self, size: float = 0.1, shape: str = "square", steps: int = 500, batch_size: int = 64,
                 lr: float = 0.05, margin: float = 5.0, eot: EOT | None = None) -> None:
        if not 0 < size <= 1:
            raise InputError(f"patch size must be a share of the image area in (0, 1], got {size!r}")
        if shape not in _SHAPES:
            raise InputError(f"patch shape must be square or circle, got {shape!r}")
        for key, value in (("steps", steps), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{key} must be an integer >= 1, got {value!r}")
        if not lr > 0 or not margin >= 0:
            raise InputError(f"lr must be > 0 and margin >= 0, got {lr!r}, {margin!r}")
        self.size, self.shape, self.steps, self.batch_size = size, shape, steps, batch_size
        self.lr, self.margin, self.eot = lr, margin, eot or EOT()

    def side(self, height: int, width: int) -> int:
        """Patch side in pixels for `height` x `width` images: its mask covers `size` of the area."""
        area = self.size * height * width
        side = math.sqrt(area) if self.shape == "square" else 2 * math.sqrt(area / math.pi)
        return max(1, min(round(side), height, width))

    def fit(self, model: nn.Module, x: Tensor, y: Tensor, *, target: int | None = None,
            generator: torch.Generator | None = None) -> PatchFit:
        """Train a patch on the images `x` (N, C, H, W) in [0, 1] with labels `y`, towards `target` if given."""
        if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point() or len(x) == 0:
            raise InputError("training images must be a non-empty float tensor (N, C, H, W)")
        start = time.perf_counter()
        height, width = int(x.shape[-2]), int(x.shape[-1])
        patch = Patch.blank(int(x.shape[1]), self.side(height, width), self.shape, x, generator)
        pixels = patch.pixels.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([pixels], lr=self.lr)
        history: list[float] = []
        device = generator.device if generator is not None else x.device
        with attack_mode(model):
            counter = PassCounter(model)
            for step in range(self.steps):
                rows = torch.randint(len(x), (min(self.batch_size, len(x)),), generator=generator, device=device)
                rows = rows.to(x.device)
                placement = sample_placements(len(rows), patch.side, height, width, self.eot, generator, x)
                current = Patch(pixels, patch.mask, self.shape, target)
                logits = counter(current.paste(x[rows], placement))
                objective = self._objective(logits, y[rows], target)
                optimizer.zero_grad()
                (-objective.mean()).backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                with torch.no_grad():
                    pixels.clamp_(0.0, 1.0)
                if step % 10 == 0 or step == self.steps - 1:
                    history.append(float(objective.detach().mean()))
        final = Patch(pixels.detach().clone(), patch.mask, self.shape, target)
        return PatchFit(final, history, counter.count, time.perf_counter() - start)

    def _objective(self, logits: Tensor, y: Tensor, target: int | None) -> Tensor:
        if target is None:
            return cw_margin(logits, y).clamp(max=self.margin)
        wanted = torch.full_like(y, target)
        return (-cw_margin(logits, wanted)).clamp(max=self.margin)

    def settings(self) -> dict[str, object]:
        """The hyperparameters, for reports."""
        return {"size": self.size, "shape": self.shape, "steps": self.steps, "batch_size": self.batch_size,
                "lr": self.lr, "margin": self.margin, "eot": vars(self.eot)}


def evaluate_patch(model: nn.Module, patch: Patch, x: Tensor, y: Tensor, *, placements: int = 4,
                   eot: EOT | None = None, batch_size: int = 256,
                   generator: torch.Generator | None = None) -> PatchEvaluation:
    """Paste `patch` at `placements` random places on each image and measure its success (see `PatchEvaluation`).

    Args:
        model: The classifier.
        patch: The patch (its `target` says whether success means "misclassified" or "the target").
        x: Held-out images (N, C, H, W) in [0, 1], on the model's device.
        y: Their labels.
        placements: Random placements per image.
        eot: Placement distribution; None gives a random position only (the printed patch as is).
        batch_size: Images per forward pass.
        generator: Source of the placements.
    """
    if isinstance(placements, bool) or not isinstance(placements, int) or placements < 1:
        raise InputError(f"placements must be an integer >= 1, got {placements!r}")
    eot = eot or EOT.position_only()
    height, width = int(x.shape[-2]), int(x.shape[-1])
    clean_ok, fooled, patched_ok = [], [], []
    with attack_mode(model), torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            clean_ok.append(model(xb).argmax(1) == yb)
            rows = xb.repeat(placements, 1, 1, 1)
            placement = sample_placements(len(rows), patch.side, height, width, eot, generator, xb)
            pred = model(patch.paste(rows, placement)).argmax(1).reshape(placements, -1)
            patched_ok.append(pred == yb)
            fooled.append(pred != yb if patch.target is None else pred == patch.target)
    ok, hit, kept = torch.cat(clean_ok), torch.cat(fooled, dim=1), torch.cat(patched_ok, dim=1)
    eligible = ok if patch.target is None else ok & (y != patch.target)
    attacked = int(eligible.sum())
    rate = float(hit[:, eligible].float().mean()) if attacked else 0.0
    return PatchEvaluation(success_rate=rate, attacked=attacked, placements=placements,
                           clean_accuracy=float(ok.float().mean()) if len(x) else 0.0,
                           patched_accuracy=float(kept.float().mean()) if len(x) else 0.0,
                           success=hit[:, eligible].cpu())


def patch_gallery(model: nn.Module, patch: Patch, x: Tensor, y: Tensor, *, n: int = 8,
                  generator: torch.Generator | None = None) -> list[dict[str, object]]:
    """The first `n` images with the patch pasted at a random place, as PNG data URIs for the HTML report.

    Returns:
        One JSON-ready dict per image: `label`, `clean_prediction`, `patched_prediction`, `clean_png`,
        `patched_png`.
    """
    x, y = x[:n], y[:n]
    if len(x) == 0:
        return []
    placement = sample_placements(len(x), patch.side, int(x.shape[-2]), int(x.shape[-1]), EOT.position_only(),
                                  generator, x)
    with attack_mode(model), torch.no_grad():
        patched = patch.paste(x, placement)
        clean_pred, patched_pred = model(x).argmax(1), model(patched).argmax(1)
    scale = max(1, 112 // max(int(x.shape[-1]), int(x.shape[-2])))
    return [{"label": int(y[i]), "clean_prediction": int(clean_pred[i]), "patched_prediction": int(patched_pred[i]),
             "clean_png": image_to_data_uri(x[i], scale=scale),
             "patched_png": image_to_data_uri(patched[i], scale=scale)} for i in range(len(x))]
