"""What every router shares: the server behind a request, the key check, the rate limit, the guard call.

The key, the failed-key limit per client address and the rate limit are all checked from the
headers, before any body is read.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from fastapi import Request
from torch import Tensor

from bastion.serve.payloads import RequestError
from bastion.serve.security import ApiKey
from bastion.serve.server import GuardedServer

__all__ = ["authorize", "check_model", "guard_inputs", "guarantee", "limit", "require_ops", "served"]


def served(request: Request) -> GuardedServer:
    """The server the app was built for (`create_app` keeps it in `app.state.server`)."""
    return cast(GuardedServer, request.app.state.server)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authorize(server: GuardedServer, request: Request, key: ApiKey | None) -> str:
    """The client's identity for the rate limit (its key's hash, else its address), from headers only.

    A client address that has presented too many wrong keys gets 429 before its key is even compared.
    """
    address = _address(request)
    if key is None:
        return address
    server.auth_failures.check(address)
    try:
        return key.check(request.headers)
    except RequestError:
        server.auth_failures.take(address)  # the 401 below, or a 429 once this address has failed too often
        raise


def limit(server: GuardedServer, who: str, cost: int) -> None:
    """Take `cost` inputs from `who`'s rate-limit bucket (429 with Retry-After when empty)."""
    if server.limiter is not None and cost > 0:
        server.limiter.take(who, float(cost))


def require_ops(server: GuardedServer, request: Request) -> None:
    """/metrics, /status.json and the status page publish the calibration: behind the key unless public."""
    if server.api_key is not None and not server.config.security.public_status:
        authorize(server, request, server.api_key)


def check_model(server: GuardedServer, name: str, version: str | None = None) -> None:
    """404 unless `name` (and `version`, the weights' fingerprint prefix) is the served model."""
    if name != server.name:
        raise RequestError(404, f"unknown model {name!r}; this server serves {server.name!r}")
    if version is not None and version != server.fingerprint[:12]:
        raise RequestError(404, f"unknown version {version!r} of {name!r}; it serves {server.fingerprint[:12]!r}")


def guarantee(server: GuardedServer) -> dict[str, Any]:
    """The guarantee as every response carries it: holds, why, since."""
    return dict(server.guarantee.state().public())


async def guard_inputs(server: GuardedServer, route: str, x: Tensor) -> list[dict[str, Any]]:
    """Each input of `x` (B, C, H, W) through the batcher; the verdicts as JSON-ready dicts."""
    start = time.perf_counter()
    if not server.ready:
        raise RequestError(503, "the server is shutting down")
    if len(x) == 1:
        verdicts = [await server.batcher.submit(x[0])]
    else:
        verdicts = list(await asyncio.gather(*(server.batcher.submit(item) for item in x)))
    seconds = time.perf_counter() - start
    server.metrics.duration.labels(route=route).observe(seconds)
    server.record(route, verdicts, seconds)
    return [v.to_dict() for v in verdicts]
