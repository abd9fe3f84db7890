"""The sections of the extended suite, one threat model beyond the Lp ball each (see `extended_run`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bastion.attacks.patch import EOT, AdversarialPatch, evaluate_patch, patch_gallery
from bastion.attacks.spatial import SpatialBounds, SpatialGrid, SpatialPGD
from bastion.corruptions import CORRUPTIONS, corruption_accuracy, mean_corruption_error
from bastion.data import load_dataset
from bastion.evaluate.context import EvalContext
from bastion.evaluate.shards import sum_over_processes
from bastion.models import load_model, model_device_dtype
from bastion.passes import PassCount
from bastion.render.png import image_to_data_uri, perturbation_to_data_uri
from bastion.threat import ThreatModel

__all__ = ["SECTIONS", "ExtendedOptions", "ExtendedSection"]

@dataclass(frozen=True)
class ExtendedSection:
    """One threat model of the extended suite, as the report shows it.

    `success_rate` is the share of the attacked points (those the model classifies correctly) that
    the attack fooled (for corruptions, which have no adversary: the share of (point, corruption,
    severity) triples misclassified); `accuracy` the accuracy over all the points the section measured.
    """

    name: str
    title: str
    threat_model: str
    budget: dict[str, Any]
    success_rate: float | None = None
    accuracy: float | None = None
    attacked: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    gallery: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None


@dataclass(frozen=True)
class ExtendedOptions:
    """What the extended sections need beside their budgets: where to train, and where to load from.

    Attributes:
        extended_budget: Budgets by name (the keys of `DEFAULTS`); the others keep their defaults.
        extended_train_data: Data spec the patch and universal perturbation train on; None trains on
            the first half of the evaluated points and measures on the second.
        data_root: Where torchvision data sets are stored.
        device: Where the baseline model of the corruption section runs.
    """

    extended_budget: dict[str, Any] = field(default_factory=dict)
    extended_train_data: str | None = None
    data_root: str | None = None
    device: str = "auto"


def _points(ctx: EvalContext, limit: int | None = None) -> Tensor:
    """Indices of the correctly classified points (all points if the clean stage has not run), at most `limit`."""
    if len(ctx.correct) == len(ctx.data):
        chosen = ctx.correct.nonzero().squeeze(1)
    else:
        chosen = torch.arange(len(ctx.data))
    return chosen if limit is None else chosen[:limit]


@dataclass(frozen=True)
class _Split:
    """Training and held-out images of the sections that learn one perturbation for many images."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    description: str


def _split(ctx: EvalContext, config: ExtendedOptions, s: dict[str, Any]) -> _Split | None:
    """`extended_train_data` (at most `patch_train_limit` points) vs all evaluated points, or the two halves."""
    train_spec = getattr(config, "extended_train_data", None)
    everything = torch.arange(len(ctx.data))
    if train_spec:
        train = load_dataset(train_spec, root=config.data_root, limit=s["patch_train_limit"])
        x_train, y_train = train.batch(slice(None), device=ctx.device, dtype=ctx.dtype)
        held_out = everything
        description = f"trained on {len(train)} points of {train.name}, measured on all evaluated points"
    else:
        if len(ctx.data) < 2:
            return None
        half = len(ctx.data) // 2
        x_train, y_train = ctx.data.batch(everything[:half], device=ctx.device, dtype=ctx.dtype)
        held_out = everything[half:]
        description = f"trained on the first {half} evaluated points, measured on the other {len(held_out)}"
    x_test, y_test = ctx.data.batch(held_out, device=ctx.device, dtype=ctx.dtype)
    return _Split(x_train, y_train, x_test, y_test, description)


def _patch(ctx: EvalContext, config: ExtendedOptions, s: dict[str, Any]) -> ExtendedSection:
    data = _split(ctx, config, s)
    if data is None:
        return ExtendedSection("patch", "Adversarial patch", "—", {}, skipped="needs at least 2 points")
    x_train, y_train, x_test, y_test, split = data.x_train, data.y_train, data.x_test, data.y_test, data.description
    trainer = AdversarialPatch(size=s["patch_size"], shape=s["patch_shape"], steps=s["patch_steps"],
                               batch_size=min(64, max(1, len(x_train))), eot=EOT())
    target = s["patch_target"]
    fit = trainer.fit(ctx.model, x_train, y_train, target=target, generator=ctx.generator("patch-fit"))
    result = evaluate_patch(ctx.model, fit.patch, x_test, y_test, placements=s["patch_placements"],
                            batch_size=ctx.batch_size, generator=ctx.generator("patch-measure"))
    goal = "untargeted" if target is None else f"targeted at class {target}"
    area = float(fit.patch.mask.sum()) / (x_test.shape[-1] * x_test.shape[-2])
    gallery = patch_gallery(ctx.model, fit.patch, x_test, y_test, n=s["gallery"],
                            generator=ctx.generator("patch-gallery"))
    side = fit.patch.side
    return ExtendedSection(
        "patch", "Adversarial patch (Brown et al., 2017)",
        f"a {s['patch_shape']} patch of {area:.1%} of the image area pasted at any position ({goal})",
        {"area": area, "side_pixels": side, "steps": s["patch_steps"], "placements_per_image": result.placements,
         "eot": trainer.settings()["eot"], "train_passes": fit.passes.forward_samples},
        success_rate=result.success_rate, accuracy=result.patched_accuracy, attacked=result.attacked,
        details={"split": split, "clean_accuracy_held_out": result.clean_accuracy, "target": target,
                 "patch_png": image_to_data_uri(fit.patch.pixels * fit.patch.mask, scale=max(1, 112 // side)),
                 "train_history": fit.history},
        gallery=gallery)


def _spatial(ctx: EvalContext, config: ExtendedOptions, s: dict[str, Any]) -> ExtendedSection:
    bounds = SpatialBounds(s["spatial_angle"], s["spatial_translation"])
    grid = SpatialGrid(angles=s["spatial_angles"], translations=s["spatial_translations"])
    first_order = SpatialPGD(steps=s["spatial_steps"], restarts=s["spatial_restarts"])
    points = _points(ctx)
    fooled = {"grid": 0, "first-order": 0, "worst": 0}
    passes = {"grid": 0, "first-order": 0}
    examples: list[dict[str, Any]] = []
    for batch in ctx.batches(points, "spatial", replicated=True):
        x, y = batch.x, batch.y
        a, b = grid(ctx.model, x, y, bounds), first_order(ctx.model, x, y, bounds, generator=batch.generator("spatial"))
        worst = a.success | b.success
        fooled["grid"] += int(a.success.sum())
        fooled["first-order"] += int(b.success.sum())
        fooled["worst"] += int(worst.sum())
        passes["grid"] += a.passes.forward_samples
        passes["first-order"] += b.passes.forward_samples
        examples += _spatial_examples(x, y, a, s["gallery"] - len(examples))
    n_all, attacked = len(ctx.data), len(points)
    clean_errors = n_all - attacked

    def accuracy(k: str) -> float:
        return (n_all - clean_errors - fooled[k]) / n_all if n_all else 0.0

    return ExtendedSection(
        "spatial", "Spatial robustness (Engstrom et al., 2019)", f"{bounds.describe()} (rotation, then shift)",
        {"grid_points": s["spatial_angles"] * s["spatial_translations"] ** 2, "first_order_steps": s["spatial_steps"],
         "first_order_restarts": s["spatial_restarts"], "forward_samples": passes},
        success_rate=fooled["worst"] / attacked if attacked else 0.0, accuracy=accuracy("worst"), attacked=attacked,
        details={"accuracy_grid": accuracy("grid"), "accuracy_first_order": accuracy("first-order"),
                 "accuracy_worst_case": accuracy("worst"), "grid": grid.settings(),
                 "first_order": first_order.settings()},
        gallery=examples)


def _spatial_examples(x: Tensor, y: Tensor, result: Any, room: int) -> list[dict[str, Any]]:
    rows = result.success.nonzero().squeeze(1).tolist()[:max(room, 0)]
    scale = max(1, 112 // max(int(x.shape[-1]), int(x.shape[-2])))
    return [{"label": int(y[r]), "adversarial_prediction": int(result.predictions[r]),
             "angle": float(result.params[r, 0]), "tx": float(result.params[r, 1]), "ty": float(result.params[r, 2]),
             "clean_png": image_to_data_uri(x[r], scale=scale), "adversarial_png": image_to_data_uri(result.x_adv[r],
                                                                                                    scale=scale)}
            for r in rows]


def _corruptions(ctx: EvalContext, config: ExtendedOptions, s: dict[str, Any]) -> ExtendedSection:
    names = s["corruptions"] or list(CORRUPTIONS)
    options: dict[str, Any] = {"corruptions": names, "severities": list(s["severities"]),
                               "batch_size": ctx.batch_size, "seed": ctx.seed}
    table = corruption_accuracy(ctx.model, ctx.data, device=ctx.device, dtype=ctx.dtype, **options)
    details: dict[str, Any] = {**table.to_dict(), "baseline": None}
    if s["baseline_model"]:
        base = load_model(s["baseline_model"], device=config.device).module
        device, dtype = model_device_dtype(base)
        baseline = corruption_accuracy(base, ctx.data, device=device, dtype=dtype, **options)
        details["baseline"] = {"model": s["baseline_model"], **baseline.to_dict(),
                               **mean_corruption_error(table, baseline).to_dict()}
    return ExtendedSection(
        "corruptions", "Common corruptions (Hendrycks & Dietterich, 2019)",
        f"{len(names)} corruptions at severities {', '.join(map(str, s['severities']))} (no adversary: average case)",
        {"corruptions": names, "severities": list(s["severities"]), "seed": ctx.seed},
        success_rate=1 - table.mean_accuracy, accuracy=table.mean_accuracy, attacked=len(ctx.data), details=details)


def _cascade_attack(ctx: EvalContext, name: str, title: str, attack: Any, threat: Any, limit: int,
                    budget: dict[str, Any]) -> ExtendedSection:
    """Run a registered `Attack` on up to `limit` correctly classified points."""
    points = _points(ctx, limit)
    success, counted = torch.zeros(len(ctx.data), dtype=torch.bool), PassCount()
    shard = ctx.batches(points, name)
    for batch in shard:
        result = attack(ctx.model, batch.x, batch.y, threat, generator=batch.generator(name))
        success[batch.indices] = result.success.cpu()
        counted = counted + result.passes
    shard.merge(success)
    fooled, passes = int(success[points].sum()), sum_over_processes(counted).forward_samples
    attacked = len(points)
    return ExtendedSection(name, title, threat.describe(), {**budget, "forward_samples": passes},
                           success_rate=fooled / attacked if attacked else 0.0,
                           accuracy=1 - fooled / attacked if attacked else 0.0, attacked=attacked,
                           details={"settings": attack.settings(), "points": "the first correctly classified points"})


def _onepixel(ctx: EvalContext, config: ExtendedOptions, s: dict[str, Any]) -> ExtendedSection:
    cls = importlib.import_module("bastion.attacks.onepixel").OnePixel
    attack = cls(pixels=s["onepixel_pixels"], population=s["onepixel_population"], steps=s["onepixel_steps"])
    threat = ThreatModel("l0", s["onepixel_pixels"], ctx.threat.bounds)
    return _cascade_attack(ctx, "onepixel", "One-pixel attack (Su et al., 2019)", attack, threat, s["max_points"],
                           {"pixels": s["onepixel_pixels"], "population": s["onepixel_population"],
                            "steps": s["onepixel_steps"]})


def _hopskipjump(ctx: EvalContext, config: ExtendedOptions, s: dict[str, Any]) -> ExtendedSection:
    cls = importlib.import_module("bastion.attacks.hopskipjump").HopSkipJump
    attack = cls(n_queries=s["hsj_queries"])
    return _cascade_attack(ctx, "hopskipjump", "HopSkipJump, label-only (Chen et al., 2020)", attack, ctx.threat,
                           s["max_points"], {"queries_per_point": s["hsj_queries"]})


def _universal(ctx: EvalContext, config: ExtendedOptions, s: dict[str, Any]) -> ExtendedSection:
    module = importlib.import_module("bastion.attacks.universal")
    title = "Universal adversarial perturbation (Moosavi-Dezfooli et al., 2017)"
    data = _split(ctx, config, s)
    if data is None:
        return ExtendedSection("universal", title, "—", {}, skipped="needs at least 2 points")
    threat = ctx.threat if s["universal_eps"] is None else ctx.threat.with_eps(s["universal_eps"])
    learner = module.UniversalPerturbation(method=s["universal_method"], epochs=s["universal_epochs"])
    fit = learner.fit(ctx.model, data.x_train, data.y_train, threat, generator=ctx.generator("universal"))
    score = module.evaluate_universal(ctx.model, fit.delta, data.x_test, data.y_test, bounds=threat.bounds,
                                      batch_size=ctx.batch_size)
    side = max(int(fit.delta.shape[-1]), int(fit.delta.shape[-2]))
    return ExtendedSection(
        "universal", title, f"one perturbation for every image, {threat.describe()}",
        {"method": s["universal_method"], "epochs": s["universal_epochs"], "eps": threat.eps,
         "train_passes": fit.passes.forward_samples},
        success_rate=score.fooling_rate, accuracy=score.perturbed_accuracy, attacked=score.n,
        details={"split": data.description, "success_rate_is": "fooling rate: share of held-out images whose "
                 "predicted label changes (the paper's definition)", "clean_accuracy_held_out": score.clean_accuracy,
                 "train_fooling_rate": fit.train_fooling_rate,
                 "perturbation_png": perturbation_to_data_uri(fit.delta, scale=max(1, 112 // side))})


#: Every section of the extended suite in run order: name, title, and the function that runs it.
SECTIONS: list[tuple[str, str, Callable[[EvalContext, ExtendedOptions, dict[str, Any]], ExtendedSection]]] = [
    ("patch", "Adversarial patch", _patch),
    ("spatial", "Spatial robustness", _spatial),
    ("corruptions", "Common corruptions", _corruptions),
    ("onepixel", "One-pixel attack", _onepixel),
    ("universal", "Universal adversarial perturbation", _universal),
    ("hopskipjump", "HopSkipJump", _hopskipjump),
]
