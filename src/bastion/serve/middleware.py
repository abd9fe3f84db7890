"""ASGI middleware of the HTTP API: the body limit (413) and the request counter of every response."""

from __future__ import annotations

import json

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.serve.payloads import RequestError

__all__ = ["BodyLimit", "CountRequests"]


class BodyLimit:
    """ASGI middleware answering 413 to bodies over `max_bytes` (declared or actually sent)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, refusing it once its body exceeds the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _reject(send, 413, f"the body is larger than {self.max_bytes} bytes")
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestError(413, f"the body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _reject(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class CountRequests:
    """ASGI middleware counting every HTTP response in `counter` by route template and status.

    Added outermost, it also counts what inner middleware answers (413) and what the app raises
    (counted as 500, then re-raised to Starlette's error handler).
    """

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and count its response's status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            self.counter.labels(route=getattr(route, "path", "unmatched"), status=str(status)).inc()
