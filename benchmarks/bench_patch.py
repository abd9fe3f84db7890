"""Adversarial patch: bastion against ART's AdversarialPatch (its NumPy implementation) on the same model and data.

ART's NumPy patch (what `art.attacks.evasion.AdversarialPatch` runs for a PyTorch classifier without
torchvision) is targeted and circular only, so both train a targeted disc of the same diameter on
the same training images with rotation up to 22.5 degrees and the same number of image-gradients
(ART: `max_iter` passes over the training set; bastion: steps x batch). Each patch is then measured
on the same held-out images twice: pasted by bastion's `evaluate_patch` (random position, 4
placements per image) and by ART's `apply_patch` (random position and rotation). Prints one row per
library: training wall time and the success rate under both measurements.

Needs ART (adversarial-robustness-toolbox) in the environment; not a bastion dependency. Run:
    OMP_NUM_THREADS=1 python benchmarks/bench_patch.py --target 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from bastion.attacks.patch import AdversarialPatch, Patch, evaluate_patch
from bastion.data import load_dataset
from bastion.models import load_zoo_model


def art_success(attack, model, patch28, x, y, target, scale, seed):  # noqa: ANN001, ANN201, D103
    np.random.seed(seed)  # ART draws its placements from numpy's global generator
    patched = torch.from_numpy(attack.apply_patch(x.numpy(), scale=scale, patch_external=patch28.numpy()))
    with torch.no_grad():
        clean, pred = model(x).argmax(1), model(patched.float()).argmax(1)
    eligible = (clean == y) if target is None else (clean == y) & (y != target)
    hit = (pred != y) if target is None else (pred == target)
    return float(hit[eligible].float().mean())


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--size", type=float, default=0.15, help="share of the image area")
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--art-lr", type=float, default=5.0, help="ART's learning rate (its default: 5.0)")
    parser.add_argument("--target", type=int, default=3)
    args = parser.parse_args()
    from art.attacks.evasion.adversarial_patch.adversarial_patch_numpy import AdversarialPatchNumpy

    class ArtPatch(AdversarialPatchNumpy):
        """ART 1.20.1's constructor passes a numpy float to reset_patch, which accepts only a Python float."""

        def reset_patch(self, initial_patch_value):  # noqa: ANN001, ANN202
            value = float(initial_patch_value) if isinstance(initial_patch_value, np.floating) else initial_patch_value
            super().reset_patch(value)
    from art.estimators.classification import PyTorchClassifier

    torch.set_num_threads(1)
    model = load_zoo_model("mnist-cnn").eval()
    x_train, y_train = load_dataset("mnist-sample:train", limit=args.n_train).batch(slice(None))
    x_test, y_test = load_dataset("mnist-sample:eval", limit=args.n_eval).batch(slice(None))
    ours = AdversarialPatch(size=args.size, shape="circle", steps=args.steps, batch_size=args.batch, lr=args.lr)
    side = ours.side(28, 28)
    scale = side / 28

    start = time.perf_counter()
    fit = ours.fit(model, x_train, y_train, target=args.target, generator=torch.Generator().manual_seed(0))
    ours_seconds = time.perf_counter() - start

    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                   nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    epochs = max(1, round(args.steps * args.batch / args.n_train))
    attack = ArtPatch(classifier, target=args.target, rotation_max=22.5, scale_min=scale,
                                   scale_max=scale, learning_rate=args.art_lr, max_iter=epochs, batch_size=args.batch,
                                   verbose=False)
    labels = torch.full_like(y_train, args.target)
    start = time.perf_counter()
    art_patch, _ = attack.generate(x_train.numpy(), y=np.eye(10)[labels.numpy()])
    art_seconds = time.perf_counter() - start
    art_steps = epochs * args.n_train // args.batch

    # The same patch for both measurements: ART's resampled to bastion's side, bastion's to ART's 28x28.
    art_small = F.interpolate(torch.from_numpy(art_patch).float()[None], size=(side, side), mode="area")[0]
    theirs = Patch(art_small.clamp(0, 1), fit.patch.mask, "circle", args.target)
    ours28 = F.interpolate(fit.patch.pixels[None], size=(28, 28), mode="nearest")[0]
    print(f"disc patch of diameter {side} px ({float(fit.patch.mask.sum()) / 784:.1%} of the image), "
          f"target {args.target}, {args.n_train} training / "
          f"{args.n_eval} held-out images of mnist-sample, zoo:mnist-cnn")
    print(f"{'library':<8}{'steps x batch':>15}{'train s':>9}{'success (bastion paste)':>25}"
          f"{'success (ART paste)':>21}")
    for name, patch, big, steps, seconds in (("bastion", fit.patch, ours28, args.steps, ours_seconds),
                                             ("ART", theirs, torch.from_numpy(art_patch), art_steps, art_seconds)):
        mine = evaluate_patch(model, patch, x_test, y_test, generator=torch.Generator().manual_seed(1)).success_rate
        art = art_success(attack, model, big, x_test, y_test, args.target, scale, seed=1)
        print(f"{name:<8}{f'{steps} x {args.batch}':>15}{seconds:>9.1f}{mine:>25.1%}{art:>21.1%}")


if __name__ == "__main__":
    main()
