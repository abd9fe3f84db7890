"""Operations: Prometheus `/metrics`, `/status.json`, the status page at `/`, and `POST /admin/recalibrate`.

With an API key configured, the first three need it (they publish the calibration quantiles),
unless `security.public_status`. The admin route takes the admin key (else the API key) and is off
without either.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from bastion.serve.admin import recalibration_images
from bastion.serve.payloads import RequestError
from bastion.serve.routes.access import authorize, require_ops, served
from bastion.serve.status import render_status_page

__all__ = ["router"]

router = APIRouter()


@router.post("/admin/recalibrate")
async def recalibrate(request: Request) -> JSONResponse:
    """Calibrate the guard anew on the clean images sent (or, opt-in, the accepted ones) and reset the monitors."""
    server = served(request)
    key = server.admin_key or server.api_key
    if key is None:
        raise RequestError(403, "the admin routes are off: start the server with --admin-key-file (or "
                           "--api-key-file)")
    authorize(server, request, key)
    body = await request.body()
    accepted = await server.batcher.call(lambda: list(server.accepted))  # read where it is written
    x, source = recalibration_images(body, server.input_shape, accepted, server.config.monitor.keep_accepted)
    return JSONResponse(await server.batcher.call(lambda: server.recalibrate(x, source)))


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition."""
    server = served(request)
    require_ops(server, request)
    return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/status.json")
async def status(request: Request) -> dict[str, Any]:
    """The status page's data: the guarantee, the guard's calibration, drift, counts."""
    server = served(request)
    require_ops(server, request)
    return server.status()


@router.get("/", response_class=HTMLResponse)
async def status_page(request: Request) -> HTMLResponse:
    """The status page; a browser without the key is asked for it (HTTP Basic, the key as password)."""
    server = served(request)
    try:
        require_ops(server, request)
    except RequestError as error:
        if error.status == 401:
            raise RequestError(401, str(error), headers={"WWW-Authenticate": 'Basic realm="bastion serve"'}) from None
        raise
    return HTMLResponse(render_status_page(server.status()))
