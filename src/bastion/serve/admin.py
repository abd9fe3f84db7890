"""The admin route's request: which clean images to recalibrate the guard on.

`POST /admin/recalibrate` takes one of:

    {"calibration": "npz:clean.npz", "limit": 2000}     a data spec the server loads
    {"inputs": [{"name": "input", "shape": [N, C, H, W], "datatype": "UINT8", "data": [...]}]}
    {"source": "accepted"}                               the last accepted inputs (opt-in: --keep-accepted)

Recalibrating on accepted traffic lets whoever sent that traffic choose the calibration set: an
attacker whose inputs were accepted (or who sends many borderline ones) shifts the conformal
p-values so that their later inputs pass. It is therefore off unless the server keeps accepted
inputs (`monitor.keep_accepted` > 0), and the clean sets of the other two forms are preferred.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bastion.data import load_dataset
from bastion.errors import InputError
from bastion.serve.payloads import RequestError, decode_infer, parse_json

__all__ = ["recalibration_images"]

_MAX_IMAGES = 100_000


def recalibration_images(body: bytes, shape: tuple[int, int, int], accepted: list[Tensor],
                         keep_accepted: int) -> tuple[Tensor, str]:
    """The images (N, C, H, W) in [0, 1] a recalibration request names, and a one-line description of them.

    Raises:
        RequestError: 400/422 for a body that names no usable set, 409 for accepted traffic when it is not kept.
    """
    document: Any = parse_json(body)
    if not isinstance(document, dict):
        raise RequestError(422, "send {\"calibration\": SPEC}, an infer-style {\"inputs\": [...]} or "
                           "{\"source\": \"accepted\"}")
    if document.get("source") == "accepted":
        if keep_accepted <= 0:
            raise RequestError(409, "recalibrating on accepted traffic is off (it lets that traffic poison the "
                               "calibration set); start the server with --keep-accepted N to allow it")
        if not accepted:
            raise RequestError(409, "no accepted inputs are kept yet")
        return torch.stack(accepted), f"the last {len(accepted)} accepted inputs"
    if "inputs" in document:
        _, x = decode_infer(body, shape, _MAX_IMAGES)
        return x, f"{len(x)} images sent to /admin/recalibrate"
    spec, limit = document.get("calibration"), document.get("limit")
    if not isinstance(spec, str) or (limit is not None and (not isinstance(limit, int) or limit < 1)):
        raise RequestError(422, "send {\"calibration\": SPEC, \"limit\": N (optional, >= 1)}, an infer-style "
                           "{\"inputs\": [...]} or {\"source\": \"accepted\"}")
    try:
        data = load_dataset(spec, limit=limit, seed=0 if limit else None)
    except InputError as error:
        raise RequestError(422, f"cannot load {spec}: {error}") from None
    x = data.images.float() / 255.0 if data.images.dtype == torch.uint8 else data.images.float()
    if tuple(x.shape[1:]) != shape:
        raise RequestError(422, f"{spec} holds images of shape {tuple(x.shape[1:])}, the model takes {shape}")
    return x, spec if limit is None else f"{spec} ({limit} images)"
