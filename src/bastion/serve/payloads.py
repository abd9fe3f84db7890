"""Request and response payloads of the Open Inference Protocol v2 (KServe, Triton, Seldon).

The protocol's infer request carries named tensors as {"name", "shape", "datatype", "data"} with the
data flattened in row-major order (nested lists are accepted too). bastion takes one image tensor
named "input" of shape (B, C, H, W) or (C, H, W): FP16/FP32/FP64 in [0, 1], or UINT8 in 0-255. Names
and datatypes are checked as the protocol spells them (upper-case "FP32"; data of numbers, never
strings). A request may name the `outputs` it wants ("label", "outcome", "confidence"); the
response's `parameters` hold scalars only, as the protocol requires: the guard's per-input details
as one JSON string (`"guard"`) and the guarantee as `guarantee_holds`, `guarantee_why` and
`guarantee_since`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from bastion.errors import InputError

__all__ = ["INPUT_NAME", "OUTPUTS", "InferInput", "InferRequest", "RequestError", "decode_infer", "infer_response",
           "parse_json"]

_FLOAT_TYPES = {"FP16", "FP32", "FP64"}
_TYPES = _FLOAT_TYPES | {"UINT8"}
#: The name of the one input tensor, as the model metadata publishes it.
INPUT_NAME = "input"
#: The output tensors: name -> datatype.
OUTPUTS = {"label": "INT64", "outcome": "BYTES", "confidence": "FP64"}


class RequestError(InputError):
    """A request the server refuses: the HTTP status and a one-line reason.

    Args:
        status: 4xx status code.
        message: The reason, one line.
        retry_after: Seconds until a retry may succeed (a 429's `Retry-After`).
        headers: Other response headers (e.g. `WWW-Authenticate`).
    """

    def __init__(self, status: int, message: str, *, retry_after: float | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.retry_after, self.extra = status, retry_after, dict(headers or {})

    def headers(self) -> dict[str, str]:
        """Response headers: `Retry-After` (whole seconds, at least 1) on a 429, and any others given."""
        if self.retry_after is None:
            return dict(self.extra)
        return {**self.extra, "Retry-After": str(max(1, math.ceil(self.retry_after)))}


class InferInput(BaseModel):
    """One input tensor of an infer request."""

    model_config = ConfigDict(extra="allow")
    name: str
    shape: list[int] = Field(min_length=1, max_length=8)
    datatype: str
    data: list[Any]


class RequestedOutput(BaseModel):
    """An output the client asks for."""

    model_config = ConfigDict(extra="allow")
    name: str


class InferRequest(BaseModel):
    """An Open Inference Protocol v2 infer request."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


def parse_json(body: bytes) -> Any:
    """The JSON document in `body`, or a 400 naming where it breaks."""
    try:
        return json.loads(body)
    except RecursionError:  # e.g. 100,000 nested "[": refused, never a 500
        raise RequestError(400, "the body is not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as error:
        raise RequestError(400, f"the body is not valid JSON: {error.msg} at line {error.lineno} column "
                           f"{error.colno}") from None
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not valid JSON: not UTF-8 text") from None


def _validated(document: Any) -> InferRequest:
    try:
        return InferRequest.model_validate(document)
    except RecursionError:
        raise RequestError(400, "the request is nested too deeply") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(422, f"not an infer request: {where}: {first['msg']}") from None


def decode_infer(body: bytes, shape: tuple[int, int, int], max_items: int) -> tuple[InferRequest, Tensor]:
    """Parse an infer request into its images (B, C, H, W), float32 in [0, 1].

    Raises:
        RequestError: 400 for bad JSON, 422 for a wrong structure, datatype, shape, channel count,
            NaN or out-of-range values, 413 for more than `max_items` images.
    """
    request = _validated(parse_json(body))
    if len(request.inputs) != 1:
        raise RequestError(422, f"send exactly one input tensor, got {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.name != INPUT_NAME:
        raise RequestError(422, f"unknown input {tensor.name!r}; the model's input is named {INPUT_NAME!r}")
    datatype = tensor.datatype
    if datatype not in _TYPES:
        raise RequestError(422, f"datatype {tensor.datatype!r} is not accepted; use FP32, FP64, FP16 or UINT8 "
                           "(upper case, as the protocol spells them)")
    for wanted in request.outputs or []:
        if wanted.name not in OUTPUTS:
            raise RequestError(422, f"unknown output {wanted.name!r}; the outputs are {', '.join(OUTPUTS)}")
    dims = list(tensor.shape)
    if len(dims) == 3:
        dims = [1, *dims]
    if len(dims) != 4 or any(d < 1 for d in dims):
        raise RequestError(422, f"shape {tensor.shape} is not (B, C, H, W) or (C, H, W) with positive sizes")
    if dims[1] != shape[0]:
        raise RequestError(422, f"the model takes {shape[0]} channel(s), the input has {dims[1]}")
    if tuple(dims[2:]) != shape[1:]:
        raise RequestError(422, f"the model takes images of {shape[1]}x{shape[2]}, the input is "
                           f"{dims[2]}x{dims[3]}")
    if dims[0] > max_items:
        raise RequestError(413, f"{dims[0]} images in one request; at most {max_items} are accepted")
    try:
        raw = np.asarray(tensor.data)
    except (ValueError, TypeError, RecursionError):
        raw = np.asarray([], dtype=object)
    # Numbers only: numpy would turn the strings "0.5" into floats, and booleans into 0 and 1.
    if raw.dtype.kind not in "iuf":
        raise RequestError(422, f"{datatype} data must be numbers (flat or nested lists of equal lengths)")
    if raw.size != math.prod(dims):
        raise RequestError(422, f"data holds {raw.size} values, shape {tensor.shape} needs {math.prod(dims)}")
    lo, hi = (float(raw.min()), float(raw.max())) if raw.size else (0.0, 0.0)  # NaN and inf show in min or max
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise RequestError(422, "data contains NaN or infinite values")
    array = raw.astype(np.float64)
    if datatype == "UINT8":
        if lo < 0 or hi > 255 or (raw.dtype.kind == "f" and bool((array != np.round(array)).any())):
            raise RequestError(422, "UINT8 data must be whole numbers in 0-255")
        array = array / 255.0
    elif lo < 0 or hi > 1:
        raise RequestError(422, f"{datatype} pixel values must lie in [0, 1], got min {lo:.4g} max {hi:.4g}")
    return request, torch.from_numpy(array.astype(np.float32).reshape(dims))


def infer_response(name: str, version: str, request: InferRequest, verdicts: list[dict[str, Any]],
                   guarantee: dict[str, Any]) -> dict[str, Any]:
    """The infer response: the requested output tensors (all by default) and scalar parameters.

    `parameters.guard` is the JSON text of each input's guard details (a list of objects); the
    guarantee is spread over `guarantee_holds`, `guarantee_why` and `guarantee_since`.
    """
    n = len(verdicts)
    data = {"label": [-1 if v["label"] is None else v["label"] for v in verdicts],
            "outcome": [v["outcome"] for v in verdicts], "confidence": [v["confidence"] for v in verdicts]}
    names = [o.name for o in request.outputs] if request.outputs else list(OUTPUTS)
    return {"model_name": name, "model_version": version, "id": request.id,
            "outputs": [{"name": k, "datatype": OUTPUTS[k], "shape": [n], "data": data[k]} for k in names],
            "parameters": {"guard": json.dumps(verdicts), "guarantee_holds": guarantee["holds"],
                           "guarantee_why": guarantee["why"], "guarantee_since": guarantee["since"]}}
