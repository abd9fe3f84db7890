"""The HTTP API: Open Inference Protocol v2 routes, `/predict`, `/metrics`, the status page.

Every refused request gets a 4xx with `{"error": "one line"}` (the protocol's error body) and the
server keeps serving. Inference routes need the API key when one is configured; health, metadata,
metrics and the status page do not (expose them on an internal network only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from torch import Tensor

from bastion import __version__
from bastion.serve.admin import recalibration_images
from bastion.serve.images import decode_image
from bastion.serve.payloads import RequestError, decode_infer, infer_response
from bastion.serve.security import BodyLimit
from bastion.serve.server import GuardedServer
from bastion.serve.status import render_status_page

__all__ = ["create_app"]

_log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status_code=status)


def create_app(server: GuardedServer) -> FastAPI:
    """The ASGI application serving `server`; the lifespan starts and drains its batcher.

    Example:
        >>> app = create_app(build_server(load_config("serve.toml")))
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.batcher.start()
        server.ready = True
        try:
            yield
        finally:
            server.ready = False
            await server.batcher.stop()  # answers what is queued
            server.close()

    app = FastAPI(title="bastion serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=server.config.limits.max_body_bytes)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        server.metrics.requests.labels(outcome=f"error_{error.status}").inc()
        return _error(error.status, str(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        return _error(422, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")

    def _authorize(request: Request) -> str:
        """The client's identity for the rate limit: its key's hash, else its address."""
        if server.api_key is not None:
            return server.api_key.check(request.headers)
        return request.client.host if request.client else "unknown"

    def _limit(who: str, cost: int) -> None:
        if server.limiter is not None:
            server.limiter.take(who, float(cost))

    def _model(name: str) -> None:
        if name != server.name:
            raise RequestError(404, f"unknown model {name!r}; this server serves {server.name!r}")

    def _guarantee() -> dict[str, Any]:
        return dict(server.guarantee.state().public())

    async def _guard(route: str, x: Tensor) -> list[dict[str, Any]]:
        start = time.perf_counter()
        if not server.ready:
            raise RequestError(503, "the server is shutting down")
        verdicts = await asyncio.gather(*(server.batcher.submit(item) for item in x))
        seconds = time.perf_counter() - start
        server.metrics.duration.labels(route=route).observe(seconds)
        server.record(route, verdicts, seconds)
        return [v.to_dict() for v in verdicts]

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        return JSONResponse({"ready": server.ready}, status_code=200 if server.ready else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "bastion", "version": __version__, "extensions": ["guard"]}

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str) -> dict[str, Any]:
        _model(name)
        c, h, w = server.input_shape
        return {"name": server.name, "versions": [server.fingerprint[:12]], "platform": "pytorch",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, c, h, w]}],
                "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                            {"name": "outcome", "datatype": "BYTES", "shape": [-1]},
                            {"name": "confidence", "datatype": "FP64", "shape": [-1]}],
                "parameters": {"guard": server.guard.summary(), "fingerprint": server.fingerprint}}

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> JSONResponse:
        _model(name)
        return JSONResponse({"name": server.name, "ready": server.ready}, status_code=200 if server.ready else 503)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> JSONResponse:
        _model(name)
        who = _authorize(request)
        body = await request.body()
        parsed, x = decode_infer(body, server.input_shape, server.config.limits.max_items)
        _limit(who, len(x))
        verdicts = await _guard("infer", x)
        # A JSONResponse skips FastAPI's generic encoder: the payload is plain JSON types already.
        return JSONResponse(infer_response(server.name, server.fingerprint[:12], parsed.id, verdicts, _guarantee()))

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        _limit(_authorize(request), 1)
        data = await _upload(request)
        limits = server.config.limits
        x = decode_image(data, server.input_shape, max_side=limits.max_image_side, resize=limits.resize)
        (verdict,) = await _guard("predict", x[None])
        return JSONResponse({"model": server.name, **verdict, "guarantee": _guarantee()})

    @app.post("/admin/recalibrate")
    async def recalibrate(request: Request) -> JSONResponse:
        key = server.admin_key or server.api_key
        if key is None:
            raise RequestError(403, "the admin routes are off: start the server with --admin-key-file (or "
                               "--api-key-file)")
        key.check(request.headers)
        body = await request.body()
        accepted = await server.batcher.call(lambda: list(server.accepted))  # read where it is written
        x, source = recalibration_images(body, server.input_shape, accepted, server.config.monitor.keep_accepted)
        return JSONResponse(await server.batcher.call(lambda: server.recalibrate(x, source)))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/status.json")
    async def status() -> dict[str, Any]:
        return server.status()

    @app.get("/", response_class=HTMLResponse)
    async def status_page() -> HTMLResponse:
        return HTMLResponse(render_status_page(server.status()))

    return app


async def _upload(request: Request) -> bytes:
    """The image bytes of /predict: a multipart field `image` (or `file`), or a raw image/* body."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("image/") or kind == "application/octet-stream":
        return await request.body()
    if not kind.startswith("multipart/form-data"):
        raise RequestError(415, "send the image as multipart/form-data (field 'image') or as an image/* body")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except MultiPartException as error:
        raise RequestError(400, f"malformed multipart body: {error.message}") from None
    upload = form.get("image") or form.get("file")
    if upload is None or isinstance(upload, str):
        raise RequestError(400, "the multipart body has no file field named 'image'")
    data: bytes = await upload.read()
    await form.close()
    return data
