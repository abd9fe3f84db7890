"""Attacks beyond the Lp ball, beside independent implementations, on zoo:mnist-cnn and the same points.

Rows, two per attack (bastion first), measured by the same code for every row:
- one-pixel (k = --pixels, default 1) vs torchattacks' OnePixel (DE, popsize 30: 30 // 3k * 3k candidates)
  and ART's PixelAttack (DE, es=1: 400 // 3k * 3k candidates), bastion at each peer's population and generations;
- HopSkipJump L2 vs ART's HopSkipJump: ART runs `--hsj-iters` iterations (it has no query budget); bastion
  gets as its per-image budget ART's mean queries per image, rounded down; success = L2 norm <= 2.0
  (the protocol's MNIST eps), and the median L2 norm;
- universal perturbation Linf eps=0.2 vs ART's UniversalPerturbation (DeepFool attacker, same overshoot
  0.02, 10 DeepFool steps, same epochs and 1 - delta = 0.8): learned on images 0.. of mnist-sample:train,
  success = fooling rate on held-out mnist-sample:eval points.

Queries are forward samples counted by one wrapper module around the model for every implementation
(bastion's count includes `Attack.__call__`'s final check, one per image). Success is recomputed on the
returned images: fooled, and for one-pixel at most k pixels changed by more than 1/255 (ART rescales
images to 0-255 and back, which moves every pixel by float error). Runs are interleaved by chunks of
points so machine load falls on both. Peers are not dependencies; use the throwaway venv:

    OMP_NUM_THREADS=1 /tmp/peers/bin/python benchmarks/bench_beyond_lp.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from bastion import ThreatModel
from bastion.attacks import HopSkipJump, OnePixel
from bastion.attacks.universal import UniversalPerturbation, evaluate_universal
from bastion.data import load_dataset
from bastion.models import load_zoo_model


class Counted(nn.Module):
    """Counts the samples every implementation pushes through the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.samples, self.calls = model, 0, 0

    def forward(self, x: Tensor) -> Tensor:
        self.samples += int(x.shape[0])
        self.calls += 1
        out: Tensor = self.model(x.float())  # ART's HopSkipJump sends float64 noise
        return out


@dataclass
class Row:
    """Accumulated over chunks: points, successes, queries, seconds, per-point norms."""

    name: str
    n: int = 0
    hits: int = 0
    samples: int = 0
    seconds: float = 0.0
    norms: list[float] = field(default_factory=list)
    rate: float | None = None  # set where success is not hits / n (universal: held-out fooling rate)

    def line(self, extra: str = "") -> str:
        rate = self.hits / max(self.n, 1) if self.rate is None else self.rate
        return (f"{self.name:<46}{rate:>9.1%}{self.samples / max(self.n, 1):>14.0f}{self.seconds:>10.1f}"
                f"{self.seconds / max(self.n, 1):>10.3f}  {extra}")


def timed(counted: Counted, run: Callable[..., Tensor], *args: object, **kwargs: object) -> tuple[Tensor, int, float]:
    before, start = counted.samples, time.perf_counter()
    out = run(*args, **kwargs)
    return out.detach().float(), counted.samples - before, time.perf_counter() - start


def _x_adv(attack: object, *args: object, **kwargs: object) -> Tensor:
    return attack(*args, **kwargs).x_adv  # type: ignore[operator,no-any-return]


def _art(attack: object, x: Tensor, y: Tensor | None = None) -> Tensor:
    out = attack.generate(x.numpy(), None if y is None else y.numpy())  # type: ignore[attr-defined]
    return torch.from_numpy(np.asarray(out, dtype=np.float32))


def art_classifier(model: nn.Module) -> object:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                             clip_values=(0.0, 1.0), device_type="cpu")


def onepixel(model: Counted, x: Tensor, y: Tensor, args: argparse.Namespace) -> None:
    import torchattacks
    from art.attacks.evasion import PixelAttack

    k = args.pixels
    threat = ThreatModel("l0", k)
    dims = 3 * k  # (row, col, value) per pixel: the peers' population is a multiple of the dimension
    configs = [("torchattacks OnePixel", 30 // dims * dims, args.ta_steps),
               ("ART PixelAttack (DE)", 400 // dims * dims, args.art_iters)]
    for peer_name, population, steps in configs:
        ours, theirs = Row(f"bastion onepixel k={k} pop={population} steps={steps}"), Row(f"{peer_name} same budget")
        n = len(x) if peer_name.startswith("torchattacks") else min(args.n_art_pixel, len(x))
        for start in range(0, n, args.chunk):
            xc, yc = x[start : min(start + args.chunk, n)], y[start : min(start + args.chunk, n)]
            attack = OnePixel(pixels=k, population=population, steps=steps)
            gen = torch.Generator().manual_seed(start)
            adv, q, s = timed(model, _x_adv, attack, model, xc, yc, threat, generator=gen)
            _score_sparse(ours, model, xc, yc, adv, q, s, k)
            if peer_name.startswith("torchattacks"):
                peer = torchattacks.OnePixel(model, pixels=k, steps=steps, popsize=30, inf_batch=512)
                adv, q, s = timed(model, peer, xc, yc)
            else:
                art = PixelAttack(art_classifier(model), th=k, es=1, max_iter=steps, verbose=False)
                adv, q, s = timed(model, _art, art, xc, yc)
            _score_sparse(theirs, model, xc, yc, adv, q, s, k)
        print(ours.line())
        print(theirs.line())


def _score_sparse(row: Row, model: nn.Module, x: Tensor, y: Tensor, adv: Tensor, q: int, s: float, k: int) -> None:
    with torch.no_grad():
        fooled = model.model(adv).argmax(1) != y  # type: ignore[operator]
    changed = ((adv - x).abs() > 1 / 255).flatten(1).sum(1)
    row.n, row.hits = row.n + len(x), row.hits + int((fooled & (changed <= k)).sum())
    row.samples, row.seconds = row.samples + q, row.seconds + s


def hopskipjump(model: Counted, x: Tensor, y: Tensor, args: argparse.Namespace) -> None:
    from art.attacks.evasion import HopSkipJump as ArtHSJ

    eps = 2.0
    threat = ThreatModel.unbounded("l2", (1, 28, 28))
    ours, theirs = Row("bastion hopskipjump l2 (budget = ART's)"), Row(f"ART HopSkipJump l2 max_iter={args.hsj_iters}")
    for start in range(0, len(x), args.chunk):
        xc, yc = x[start : start + args.chunk], y[start : start + args.chunk]
        art = ArtHSJ(art_classifier(model), norm=2, max_iter=args.hsj_iters, max_eval=10000, init_eval=100,
                     init_size=100, verbose=False)
        adv_art, q_art, s = timed(model, _art, art, xc)
        _score_norm(theirs, model, xc, yc, adv_art, q_art, s, eps)
        budget = q_art // len(xc)
        attack = HopSkipJump(n_queries=budget, steps=10_000)
        gen = torch.Generator().manual_seed(start)
        adv, q, s = timed(model, _x_adv, attack, model, xc, yc, threat, generator=gen)
        _score_norm(ours, model, xc, yc, adv, q, s, eps)
    for row in (ours, theirs):
        print(row.line(f"median L2 {np.median(row.norms):.3f} (success = L2 <= {eps})"))


def _score_norm(row: Row, model: Counted, x: Tensor, y: Tensor, adv: Tensor, q: int, s: float, eps: float) -> None:
    with torch.no_grad():
        fooled = model.model(adv).argmax(1) != y
    norms = torch.where(fooled, (adv - x).flatten(1).norm(dim=1), torch.tensor(float("inf")))
    row.n, row.hits = row.n + len(x), row.hits + int((norms <= eps).sum())
    row.samples, row.seconds, row.norms = row.samples + q, row.seconds + s, row.norms + norms.tolist()


def universal(model: Counted, x_eval: Tensor, y_eval: Tensor, args: argparse.Namespace) -> None:
    from art.attacks.evasion import UniversalPerturbation as ArtUAP

    x_train, y_train = load_dataset("mnist-sample:train", limit=args.uap_train).batch(slice(None))
    eps, epochs = 0.2, args.uap_epochs
    threat = ThreatModel("linf", eps)
    rows = []
    for name in ("bastion universal uap", "ART UniversalPerturbation (deepfool)", "bastion universal sgd"):
        before, start = model.samples, time.perf_counter()
        if name.startswith("ART"):
            art = ArtUAP(art_classifier(model), attacker="deepfool",
                         attacker_params={"max_iter": 10, "epsilon": 0.02, "nb_grads": 10, "verbose": False},
                         delta=0.2, max_iter=epochs, eps=eps, norm=np.inf, verbose=False)
            art.generate(x_train.numpy())
            delta = torch.from_numpy(np.asarray(art.noise)).float()[0]
        else:
            method = name.rsplit(" ", 1)[1]
            learner = UniversalPerturbation(method=method, epochs=epochs if method == "uap" else args.sgd_epochs,
                                            target_fooling=0.8)
            delta = learner.fit(model, x_train, y_train, threat, generator=torch.Generator().manual_seed(0)).delta
        seconds, samples = time.perf_counter() - start, model.samples - before
        delta = delta.clamp(-eps, eps)  # ART's noise is its own; scored inside the same ball
        score = evaluate_universal(model.model, delta, x_eval, y_eval)
        row = Row(f"{name} linf {eps}", n=len(x_train), samples=samples, seconds=seconds, rate=score.fooling_rate)
        rows.append((row, f"held-out fooling rate on {score.n} eval points; queries and s per training image "
                          f"({len(x_train)})"))
    for row, extra in rows:
        print(row.line(extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="points: correctly classified among mnist-sample:eval")
    parser.add_argument("--n-hsj", type=int, default=50, help="points for HopSkipJump")
    parser.add_argument("--n-art-pixel", type=int, default=50, help="points for the ART PixelAttack rows")
    parser.add_argument("--chunk", type=int, default=25, help="points per interleaved run")
    parser.add_argument("--pixels", type=int, default=1, help="k, pixels the one-pixel rows may change")
    parser.add_argument("--ta-steps", type=int, default=20, help="DE generations, torchattacks rows")
    parser.add_argument("--art-iters", type=int, default=5, help="DE generations, ART PixelAttack rows")
    parser.add_argument("--hsj-iters", type=int, default=10, help="ART HopSkipJump iterations")
    parser.add_argument("--uap-train", type=int, default=300, help="training images of the universal rows")
    parser.add_argument("--uap-epochs", type=int, default=3, help="epochs of the uap and ART rows")
    parser.add_argument("--sgd-epochs", type=int, default=30, help="epochs of the sgd row (each is 3 steps at 300)")
    parser.add_argument("--only", choices=["onepixel", "hopskipjump", "universal"], help="run one attack")
    args = parser.parse_args()
    torch.manual_seed(0)  # torchattacks and ART draw from the global generators; bastion takes its own
    np.random.seed(0)
    model = Counted(load_zoo_model("mnist-cnn").eval())
    x, y = load_dataset("mnist-sample:eval").batch(slice(None))
    with torch.no_grad():
        correct = model.model(x).argmax(1) == y
    x, y = x[correct][: args.n], y[correct][: args.n]
    print(f"zoo:mnist-cnn, correctly classified points of mnist-sample:eval, {torch.get_num_threads()} thread(s)")
    print(f"{'attack':<46}{'success':>9}{'queries/pt':>14}{'seconds':>10}{'s/point':>10}")
    if args.only in (None, "onepixel"):
        import torchattacks  # noqa: F401  (fail early if the peer is missing)

        onepixel(model, x, y, args)
        print(f"  (torchattacks rows on {len(x)} points; ART rows on the first {args.n_art_pixel})")
    if args.only in (None, "hopskipjump"):
        hopskipjump(model, x[: args.n_hsj], y[: args.n_hsj], args)
    if args.only in (None, "universal"):
        universal(model, x, y, args)


if __name__ == "__main__":
    main()
