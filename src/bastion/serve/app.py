"""The ASGI application of `bastion serve`: the routers of `bastion.serve.routes` on one `GuardedServer`.

Every refused request gets a 4xx with `{"error": "one line"}` (`bastion.serve.errors`) and the
server keeps serving; every 429 carries `Retry-After`. Middleware: the body limit (413) and,
outermost, the counter of every response (`bastion.serve.middleware`). The lifespan starts the
micro-batcher and, on shutdown, answers what is queued before the request log is flushed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bastion import __version__
from bastion.serve.errors import install_error_handlers
from bastion.serve.middleware import BodyLimit, CountRequests
from bastion.serve.routes import ops, predict, v2
from bastion.serve.server import GuardedServer

__all__ = ["create_app"]


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
    app.state.server = server
    app.add_middleware(BodyLimit, max_bytes=server.config.limits.max_body_bytes)
    app.add_middleware(CountRequests, counter=server.metrics.requests)  # outermost: counts every response
    install_error_handlers(app)
    for router in (v2.router, predict.router, ops.router):
        app.include_router(router)
    return app
