"""Open Inference Protocol v2 routes: health, server and model metadata, readiness, infer.

The version routes (`/v2/models/{name}/versions/{version}/...`) take the weights' fingerprint
prefix as the version. Model metadata carries the guard's settings as scalar parameters, without
the calibration quantiles.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bastion import __version__
from bastion.serve.payloads import INPUT_NAME, OUTPUTS, decode_infer, infer_response
from bastion.serve.routes.access import authorize, check_model, guarantee, guard_inputs, limit, served
from bastion.serve.server import GuardedServer

__all__ = ["router"]

router = APIRouter()
# The infer routes come first: FastAPI tries the routes in order, and inference is the hot path.


async def _infer(name: str, version: str | None, request: Request) -> JSONResponse:
    server = served(request)
    check_model(server, name, version)
    who = authorize(server, request, server.api_key)
    limit(server, who, 1)  # before the body is read: a flood is refused without parsing anything
    parsed, x = decode_infer(await request.body(), server.input_shape, server.config.limits.max_items)
    limit(server, who, len(x) - 1)  # the limit counts inputs
    verdicts = await guard_inputs(server, "infer", x)
    # A JSONResponse skips FastAPI's generic encoder: the payload is plain JSON types already.
    return JSONResponse(infer_response(server.name, server.fingerprint[:12], parsed, verdicts, guarantee(server)))


@router.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request) -> JSONResponse:
    """Guarded inference on an OIP v2 tensor of images."""
    return await _infer(name, None, request)


@router.post("/v2/models/{name}/versions/{version}/infer")
async def version_infer(name: str, version: str, request: Request) -> JSONResponse:
    """`infer` on one version."""
    return await _infer(name, version, request)


@router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    """The process answers."""
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request) -> JSONResponse:
    """200 while the server takes requests, 503 before start and while it drains."""
    server = served(request)
    return JSONResponse({"ready": server.ready}, status_code=200 if server.ready else 503)


@router.get("/v2")
async def server_metadata() -> dict[str, Any]:
    """Name, version and the protocol extensions."""
    return {"name": "bastion", "version": __version__, "extensions": ["guard"]}


def _metadata(server: GuardedServer) -> dict[str, Any]:
    c, h, w = server.input_shape
    return {"name": server.name, "versions": [server.fingerprint[:12]], "platform": "pytorch",
            "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, c, h, w]}],
            "outputs": [{"name": k, "datatype": v, "shape": [-1]} for k, v in OUTPUTS.items()],
            "parameters": server.public_summary()}


@router.get("/v2/models/{name}")
async def model_metadata(name: str, request: Request) -> dict[str, Any]:
    """The served model's inputs, outputs and guard settings."""
    server = served(request)
    check_model(server, name)
    return _metadata(server)


@router.get("/v2/models/{name}/versions/{version}")
async def version_metadata(name: str, version: str, request: Request) -> dict[str, Any]:
    """`model_metadata` of one version."""
    server = served(request)
    check_model(server, name, version)
    return _metadata(server)


def _ready(server: GuardedServer, name: str, version: str | None) -> JSONResponse:
    check_model(server, name, version)
    return JSONResponse({"name": server.name, "ready": server.ready}, status_code=200 if server.ready else 503)


@router.get("/v2/models/{name}/ready")
async def model_ready(name: str, request: Request) -> JSONResponse:
    """Whether the model takes requests."""
    return _ready(served(request), name, None)


@router.get("/v2/models/{name}/versions/{version}/ready")
async def version_ready(name: str, version: str, request: Request) -> JSONResponse:
    """`model_ready` of one version."""
    return _ready(served(request), name, version)
