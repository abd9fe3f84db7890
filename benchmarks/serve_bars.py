"""Issue 25's rate bars for `bastion serve`, measured on the guard as the server runs it.

zoo:mnist-cnn-at at --fpr 0.05 (default detectors, combined p-value). Calibration: images 8000-8999
of the MNIST sample (the first half of `mnist-sample:eval`, in file order); traffic: images
9000-9999, in file order, as production traffic arrives, sent in micro-batches through
`GuardedServer.process` (the guard, the guarantee monitor and the on-drift policy, as behind HTTP).

Rows (flag = any outcome other than accept):

- clean and brightness x0.6 traffic in file order: flagged <= 5% + 2 SE, or the guarantee broken by the end;
- exchangeable traffic (the 2,000 images shuffled, calibrated on one half, served the other): flagged
  <= 5% + 2 SE and the guarantee still holding;
- PGD (Linf 0.3) on the traffic images: the share of successful examples (misclassified) flagged,
  >= 95%, judged by the detectors alone (on_drift "keep": once the stream breaks the guarantee, the
  default policy would flag everything, which is not the detectors' merit).

    OMP_NUM_THREADS=1 python benchmarks/serve_bars.py [--batch 16] [--steps 20] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch
from torch import Tensor

from bastion.attacks import PGD
from bastion.data import load_dataset
from bastion.serve import GuardedServer, build_server, load_config
from bastion.threat import ThreatModel

MODEL = "zoo:mnist-cnn-at"
SQUEEZERS: list[str] = []


def server_on(calibration: Tensor, on_drift: str, fpr: float) -> GuardedServer:
    config = load_config(None, {"model": {"spec": MODEL, "device": "cpu"},
                                "guard": {"calibration": "benchmark split", "fpr": fpr, "on_drift": on_drift,
                                          "squeezers": SQUEEZERS or None}})
    return build_server(config, calibration=calibration)


def serve(server: GuardedServer, x: Tensor, batch: int) -> tuple[Tensor, Tensor, int]:
    """Send `x` in order, `batch` at a time: (flagged, model labels, input that broke the guarantee or 0)."""
    verdicts = [v for chunk in torch.split(x, batch) for v in server.process(chunk)]
    flagged = torch.tensor([v.outcome != "accept" for v in verdicts])
    labels = torch.tensor([v.model_label for v in verdicts])
    state = server.guarantee.state()
    return flagged, labels, 0 if state.holds else state.since


def line(name: str, flagged: Tensor, broke: int, fpr: float, *, need_hold: bool) -> str:
    n, rate = len(flagged), float(flagged.float().mean())
    se = math.sqrt(fpr * (1 - fpr) / n)  # the standard error at the target rate
    within = rate <= fpr + 2 * se
    ok = (within and not broke) if need_hold else (within or bool(broke))
    return (f"{name:<44}{rate:>8.1%}{fpr + 2 * se:>10.1%}{f'broken at {broke}' if broke else 'holds':>18}"
            f"{'PASS' if ok else 'FAIL':>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fpr", type=float, default=0.05)
    parser.add_argument("--batch", type=int, default=16, help="inputs per micro-batch")
    parser.add_argument("--steps", type=int, default=20, help="PGD steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="exchangeable rows' shuffles")
    parser.add_argument("--squeezers", help="feature squeezers, e.g. bit-depth:1 (default: the detector's)")
    args = parser.parse_args()
    SQUEEZERS.extend(s for s in (args.squeezers or "").split(",") if s)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    data = load_dataset("mnist-sample:eval")
    x, y = data.images.float() / 255.0, data.labels
    cal, traffic, labels = x[:1000], x[1000:], y[1000:]
    print(f"{'traffic (flag = not accepted)':<44}{'flagged':>8}{'<= bar':>10}{'guarantee':>18}")
    for name, shown in (("clean, file order", traffic), ("brightness x0.6, file order", traffic * 0.6)):
        flagged, _, broke = serve(server_on(cal, "flag", args.fpr), shown, args.batch)
        print(line(name, flagged, broke, args.fpr, need_hold=False))
        flagged, _, broke = serve(server_on(cal, "keep", args.fpr), shown, args.batch)
        print(line(f"{name}, on_drift keep", flagged, broke, args.fpr, need_hold=False))
    for seed in args.seeds:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        flagged, _, broke = serve(server_on(x[order[:1000]], "flag", args.fpr), x[order[1000:]], args.batch)
        print(line(f"exchangeable (random halves, seed {seed})", flagged, broke, args.fpr, need_hold=True))
    server = server_on(cal, "keep", args.fpr)
    attack = PGD(steps=args.steps)(server.guard.model, traffic, labels, ThreatModel("linf", 0.3),
                                   generator=torch.Generator().manual_seed(0))
    flagged, predicted, _ = serve(server, attack.x_adv.float(), args.batch)
    fooled = predicted != labels
    rate = float(flagged[fooled].float().mean()) if bool(fooled.any()) else float("nan")
    print(f"\nPGD Linf 0.3 ({args.steps} steps): {int(fooled.sum())} of {len(labels)} misclassified, "
          f"{rate:.1%} of them flagged ({'PASS' if rate >= 0.95 else 'FAIL'}: >= 95%)")


if __name__ == "__main__":
    main()
