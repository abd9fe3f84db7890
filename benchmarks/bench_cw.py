"""C&W L2 on zoo:mnist-cnn: success rate, L2 norms and wall time, beside torchattacks' CW when it is installed.

Runs bastion's CW with its default budget (9 binary-search steps x 1,000 Adam steps, c0 = 1e-3) on the
first `--n` images of mnist-sample:eval (images 8000-8199 by default), unbounded eps. torchattacks' CW has
no binary search (one fixed c), so a like-for-like row runs bastion with binary_search_steps=1 and the
same c, kappa, steps and lr. Medians count a point never fooled as an infinite norm; means are over the
fooled points. torchattacks is not a dependency of bastion; to compare, use a throwaway venv:

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch numpy scipy tqdm
    /tmp/peers/bin/pip install --no-deps torchattacks && /tmp/peers/bin/pip install --no-deps -e .
    /tmp/peers/bin/python benchmarks/bench_cw.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bastion import ThreatModel
from bastion.attacks import CW
from bastion.data import load_dataset
from bastion.models import attack_mode, load_zoo_model


def summarize(name: str, model: nn.Module, x: Tensor, y: Tensor, run: Callable[[], Tensor]) -> str:
    """Run one attack, then measure success and L2 norms on its output with the same code for every row."""
    start = time.perf_counter()
    x_adv = run().detach()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    norms = (x_adv - x).flatten(1).norm(dim=1)
    median = float(torch.where(fooled, norms, torch.inf).median())
    mean = float(norms[fooled].mean()) if fooled.any() else float("nan")
    return f"{name:<44}{float(fooled.float().mean()):>9.1%}{median:>12.4f}{mean:>12.4f}{seconds:>10.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="points: the first n of mnist-sample:eval")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--binary-search-steps", type=int, default=9)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--initial-const", type=float, default=1e-3)
    parser.add_argument("--c", type=float, default=1.0, help="the fixed c of the like-for-like rows")
    parser.add_argument("--kappa", type=float, default=0.0)
    args = parser.parse_args()

    model = load_zoo_model("mnist-cnn")
    x, y = load_dataset("mnist-sample:eval", limit=args.n).batch(slice(None))
    threat = ThreatModel.unbounded("l2", tuple(x.shape[1:]))
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    print(f"C&W L2 on zoo:mnist-cnn, {args.n} points of mnist-sample:eval (clean accuracy {clean:.1%}), "
          f"unbounded eps, {torch.get_num_threads()} threads")
    print(f"{'attack':<44}{'success':>9}{'median L2':>12}{'mean L2':>12}{'seconds':>10}")

    full = CW(args.binary_search_steps, args.steps, args.lr, args.initial_const, args.kappa)
    print(summarize(f"bastion CW {args.binary_search_steps}x{args.steps}, c0={args.initial_const:g}", model, x, y,
                    lambda: full(model, x, y, threat).x_adv), flush=True)
    single = CW(1, args.steps, args.lr, args.c, args.kappa)
    print(summarize(f"bastion CW 1x{args.steps}, c={args.c:g}", model, x, y,
                    lambda: single(model, x, y, threat).x_adv), flush=True)
    try:
        import torchattacks  # type: ignore[import-not-found]
    except ImportError as error:
        print(f"no torchattacks row ({error}): run this script from a throwaway venv with scipy and "
              "`pip install --no-deps torchattacks` (see this file's docstring)")
        return
    peer = torchattacks.CW(model, c=args.c, kappa=args.kappa, steps=args.steps, lr=args.lr)
    with attack_mode(model):  # frozen weights, as bastion's attacks get them: no weight gradients
        print(summarize(f"torchattacks {torchattacks.__version__} CW {args.steps}, c={args.c:g}", model, x, y,
                        lambda: peer(x, y)), flush=True)


if __name__ == "__main__":
    main()
