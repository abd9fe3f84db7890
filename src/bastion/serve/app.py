"""The HTTP API: Open Inference Protocol v2 routes, `/predict`, `/metrics`, the status page.

Every refused request gets a 4xx with `{"error": "one line"}` (the protocol's error body) and the
server keeps serving; every 429 carries `Retry-After`. With an API key configured, inference,
`/metrics`, `/status.json` and the status page need it (the last three publish the calibration;
`security.public_status` opens them); health and model metadata (no calibration quantiles) stay
open. The key, the failed-key limit per client address and the rate limit are all checked before
the body is read. The OIP v2 version routes (`/v2/models/{name}/versions/{version}/...`) take the
weights' fingerprint prefix as the version.
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
from bastion.serve.metrics import CountRequests
from bastion.serve.payloads import INPUT_NAME, OUTPUTS, RequestError, decode_infer, infer_response
from bastion.serve.security import ApiKey, BodyLimit
from bastion.serve.server import GuardedServer
from bastion.serve.status import render_status_page

__all__ = ["create_app"]

_log = logging.getLogger(__name__)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status_code=status,
                        headers=headers)


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
    app.add_middleware(CountRequests, counter=server.metrics.requests)  # outermost: counts every response

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return _error(error.status, str(error), error.headers())

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        return _error(422, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")

    def _address(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def _authorize(request: Request, key: ApiKey | None) -> str:
        """The client's identity for the rate limit (its key's hash, else its address), from headers only.

        A client address that has presented too many wrong keys gets 429 before its key is even compared.
        """
        if key is None:
            return _address(request)
        address = _address(request)
        server.auth_failures.check(address)
        try:
            return key.check(request.headers)
        except RequestError:
            server.auth_failures.take(address)  # the 401 below, or a 429 once this address has failed too often
            raise

    def _limit(who: str, cost: int) -> None:
        if server.limiter is not None and cost > 0:
            server.limiter.take(who, float(cost))

    def _ops(request: Request) -> None:
        """/metrics, /status.json and the status page publish the calibration: behind the key unless public."""
        if server.api_key is not None and not server.config.security.public_status:
            _authorize(request, server.api_key)

    def _model(name: str, version: str | None = None) -> None:
        if name != server.name:
            raise RequestError(404, f"unknown model {name!r}; this server serves {server.name!r}")
        if version is not None and version != server.fingerprint[:12]:
            raise RequestError(404, f"unknown version {version!r} of {name!r}; it serves {server.fingerprint[:12]!r}")

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

    def _metadata() -> dict[str, Any]:
        c, h, w = server.input_shape
        return {"name": server.name, "versions": [server.fingerprint[:12]], "platform": "pytorch",
                "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, c, h, w]}],
                "outputs": [{"name": k, "datatype": v, "shape": [-1]} for k, v in OUTPUTS.items()],
                "parameters": server.public_summary()}

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str) -> dict[str, Any]:
        _model(name)
        return _metadata()

    @app.get("/v2/models/{name}/versions/{version}")
    async def version_metadata(name: str, version: str) -> dict[str, Any]:
        _model(name, version)
        return _metadata()

    async def _ready(name: str, version: str | None) -> JSONResponse:
        _model(name, version)
        return JSONResponse({"name": server.name, "ready": server.ready}, status_code=200 if server.ready else 503)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> JSONResponse:
        return await _ready(name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def version_ready(name: str, version: str) -> JSONResponse:
        return await _ready(name, version)

    async def _infer(name: str, version: str | None, request: Request) -> JSONResponse:
        _model(name, version)
        who = _authorize(request, server.api_key)
        _limit(who, 1)  # before the body is read: a flood is refused without parsing anything
        body = await request.body()
        parsed, x = decode_infer(body, server.input_shape, server.config.limits.max_items)
        _limit(who, len(x) - 1)  # the limit counts inputs
        verdicts = await _guard("infer", x)
        # A JSONResponse skips FastAPI's generic encoder: the payload is plain JSON types already.
        return JSONResponse(infer_response(server.name, server.fingerprint[:12], parsed, verdicts, _guarantee()))

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> JSONResponse:
        return await _infer(name, None, request)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def version_infer(name: str, version: str, request: Request) -> JSONResponse:
        return await _infer(name, version, request)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        _limit(_authorize(request, server.api_key), 1)
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
        _authorize(request, key)
        body = await request.body()
        accepted = await server.batcher.call(lambda: list(server.accepted))  # read where it is written
        x, source = recalibration_images(body, server.input_shape, accepted, server.config.monitor.keep_accepted)
        return JSONResponse(await server.batcher.call(lambda: server.recalibrate(x, source)))

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        _ops(request)
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/status.json")
    async def status(request: Request) -> dict[str, Any]:
        _ops(request)
        return server.status()

    @app.get("/", response_class=HTMLResponse)
    async def status_page(request: Request) -> HTMLResponse:
        try:
            _ops(request)
        except RequestError as error:  # a browser asks for the key (HTTP Basic, the key as password)
            if error.status == 401:
                raise RequestError(401, str(error), headers={"WWW-Authenticate": 'Basic realm="bastion serve"'}) \
                    from None
            raise
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
