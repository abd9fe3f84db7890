"""`bastion serve --check`: the guard's flag rates on clean, benign-shifted and attacked held-out images.

Everything goes through the HTTP API, as a client would send it: tensors to the infer route, and
real JPEG and resized PNG files to `/predict` (the false positives users meet are their compressed
photos). Rows: clean images (the flag rate should stay within the target FPR plus two standard
errors), JPEG re-compression and resizing uploads, the common corruptions of Hendrycks & Dietterich
(ICLR 2019, arXiv:1903.12261) at severities 1 and 3, PGD (Madry et al. 2018, arXiv:1706.06083)
and the detector-aware PGD of Carlini & Wagner (AISec 2017, arXiv:1705.07263).
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bastion.attacks import PGD
from bastion.corruptions import CORRUPTIONS, corrupt
from bastion.data import load_dataset
from bastion.detect import CalibratedDetector, DetectorAwarePGD, conformal_threshold
from bastion.errors import InputError
from bastion.serve.guard import Guard
from bastion.serve.provenance import image_keys
from bastion.serve.security import read_key_file
from bastion.serve.server import GuardedServer
from bastion.threat import ThreatModel

with warnings.catch_warnings():  # Starlette's test client warns that it wants httpx2; httpx serves it fine
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

__all__ = ["format_check", "run_check"]


def _headers(server: GuardedServer) -> dict[str, str]:
    path = server.config.security.api_key_file
    if path is None:
        return {}
    return {"X-API-Key": read_key_file(path)}


def _infer(client: TestClient, server: GuardedServer, x: Tensor) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    step = min(64, server.config.limits.max_items)
    for chunk in torch.split(x, step):
        body = {"inputs": [{"name": "input", "shape": list(chunk.shape), "datatype": "FP32",
                            "data": chunk.flatten().tolist()}]}
        response = client.post(f"/v2/models/{server.name}/infer", json=body, headers=_headers(server))
        response.raise_for_status()
        out += json.loads(response.json()["parameters"]["guard"])
    return out


def _upload(client: TestClient, server: GuardedServer, x: Tensor, fmt: str, size: int | None = None,
            quality: int = 75) -> list[dict[str, Any]]:
    out = []
    for image in x:
        pixels = np.rint(image.clamp(0, 1).numpy() * 255).astype(np.uint8)
        picture = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
        if size is not None:
            picture = picture.resize((size, size), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
        response = client.post("/predict", files={"image": ("x", buffer.getvalue(), f"image/{fmt.lower()}")},
                               headers=_headers(server))
        response.raise_for_status()
        out.append(response.json())
    return out


def _row(name: str, kind: str, verdicts: list[dict[str, Any]], y: Tensor,
         success: Tensor | None = None) -> dict[str, Any]:
    flagged = torch.tensor([v["outcome"] != "accept" for v in verdicts])
    wrong = torch.tensor([v["model_label"] for v in verdicts]) != y
    n, rate = len(verdicts), float(flagged.float().mean())
    row: dict[str, Any] = {"name": name, "kind": kind, "n": n, "flag_rate": rate,
                           "standard_error": math.sqrt(rate * (1 - rate) / max(n, 1)),
                           "accuracy": float((~wrong).float().mean())}
    if success is not None:
        fooled = success & wrong
        row["n_success"] = int(fooled.sum())
        row["detection_rate"] = float(flagged[fooled].float().mean()) if bool(fooled.any()) else None
        row["evasion_rate"] = float((fooled & ~flagged).float().mean())
    return row


def run_check(server: GuardedServer, make_app: Callable[[GuardedServer], Any], *, data: str = "mnist-sample:eval",
              limit: int = 500, eps: float = 0.3, attack_steps: int = 20, adaptive_steps: int = 50,
              seed: int = 0) -> dict[str, Any]:
    """Send held-out images, their benign shifts and two attacks through the API; the rates per row.

    Returns:
        {"fpr", "rows": [{"name", "kind", "n", "flag_rate", "standard_error", "accuracy", ...}], "note"};
        attack rows add "n_success" (misclassified), "detection_rate" (share of those flagged) and
        "evasion_rate" (misclassified and not flagged, over all attacked points); "guarantee_holds"
        says whether the row's traffic left the guarantee standing (each row starts afresh).
    """
    held_out = load_dataset(data)
    x = held_out.images.float() / 255.0 if held_out.images.dtype == torch.uint8 else held_out.images.float()
    # Images the guard was calibrated on are not held out: leave them out, then draw `limit` of the rest.
    fresh = torch.tensor([key not in server.calibration_keys for key in image_keys(x)], dtype=torch.bool)
    if int(fresh.sum()) < limit:
        raise InputError(f"{held_out.name} has {int(fresh.sum())} images the guard was not calibrated on, fewer than "
                         f"--check-limit {limit}")
    keep = fresh.nonzero().squeeze(1)
    keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))[:limit]].sort().values
    x, y = x[keep], held_out.labels[keep]
    server.limiter = None  # the check is one client sending everything at once
    # Each input is judged alone: the on-drift policy, which flags everything once a row breaks the
    # guarantee, is off during the check (the guarantee column reports the break instead).
    serving, g = server.guard, server.guard
    server.guard = Guard(g.model, g.detectors, g.conformal, g.settings.model_copy(update={"on_drift": "keep"}),
                         g.num_classes, g.reference, g.probes, combiner=g.combiner)
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []

    def measure(name: str, kind: str, send: Callable[[], list[dict[str, Any]]], success: Tensor | None = None) -> None:
        # Each row starts with a fresh guarantee monitor, and says whether its traffic broke it.
        server.guarantee.reset()
        row = _row(name, kind, send(), y, success)
        row["guarantee_holds"] = server.guarantee.state().holds
        rows.append(row)

    try:
        with TestClient(make_app(server)) as client:
            measure("clean", "clean", lambda: _infer(client, server, x))
            measure("jpeg upload q75", "benign", lambda: _upload(client, server, x, "JPEG", quality=75))
            measure("jpeg upload q50", "benign", lambda: _upload(client, server, x, "JPEG", quality=50))
            side = int(x.shape[-1])
            measure(f"png upload {2 * side}px", "benign", lambda: _upload(client, server, x, "PNG", 2 * side))
            measure(f"png upload {side * 3 // 4}px", "benign", lambda: _upload(client, server, x, "PNG", side * 3 // 4))
            for name in CORRUPTIONS:
                for severity in (1, 3):
                    shifted = corrupt(x, name, severity, generator)
                    measure(f"{name} s{severity}", "benign", partial(_infer, client, server, shifted))
            model, threat = server.guard.model, ThreatModel("linf", eps)
            device, dtype = server.guard.device, server.guard.dtype
            xd, yd = x.to(device, dtype), y.to(device)
            pgd = PGD(steps=attack_steps)(model, xd, yd, threat, generator=torch.Generator(device).manual_seed(seed))
            measure(f"pgd linf {eps:g}", "attack", lambda: _infer(client, server, pgd.x_adv.cpu().float()),
                    pgd.success.cpu())
            # The guard flags at a combined p-value <= fpr: about each detector at this per-signal level.
            level = server.guard.combiner.signal_level(server.guard.flag_level)
            detectors = [CalibratedDetector(d, conformal_threshold(c.sorted_scores, level), level, c.n, level)
                         for d, c in zip(server.guard.detectors, server.guard.conformal, strict=True)]
            adaptive = DetectorAwarePGD(detectors, steps=adaptive_steps)(
                model, xd, yd, threat, generator=torch.Generator(device).manual_seed(seed))
            measure(f"detector-aware pgd linf {eps:g}", "attack",
                    lambda: _infer(client, server, adaptive.x_adv.cpu().float()), adaptive.success.cpu())
    finally:
        server.guard = serving
        server.guarantee.reset()
    return {"fpr": server.config.guard.fpr, "data": held_out.name, "rows": rows,
            "note": f"{len(x)} held-out images of {held_out.name}, none of them calibration images; flag = any "
                    "outcome other than accept; each input judged alone (no on-drift policy); each row starts "
                    "with a fresh guarantee monitor"}


def format_check(report: dict[str, Any]) -> str:
    """The terminal table of a check report."""
    head = ["input", "kind", "n", "flag rate", "± 2 se", "model accuracy", "detected", "evades", "guarantee"]
    lines = [head]
    for r in report["rows"]:
        det = r.get("detection_rate")
        lines.append([r["name"], r["kind"], str(r["n"]), f"{r['flag_rate']:.1%}", f"{2 * r['standard_error']:.1%}",
                      f"{r['accuracy']:.1%}", "" if "n_success" not in r else
                      ("—" if det is None else f"{det:.1%} of {r['n_success']}"),
                      "" if "evasion_rate" not in r else f"{r['evasion_rate']:.1%}",
                      {True: "holds", False: "broken"}.get(r.get("guarantee_holds"), "")])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = [f"guard flag rates at a target false-positive rate of {report['fpr']:g} ({report['note']})"]
    out += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            for row in lines]
    return "\n".join(out)
