"""The HTTP API's error bodies: every refused request gets `{"error": "one line"}` (the protocol's error body).

`RequestError` (bastion's own refusals: 4xx, with headers such as `Retry-After`), Starlette's
`HTTPException` (404 and 405 of unknown routes and methods) and FastAPI's validation errors (422)
all answer in that one form, and the server keeps serving.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bastion.serve.payloads import RequestError

__all__ = ["error_response", "install_error_handlers"]


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": first line of message}` with `status` and `headers`."""
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status_code=status,
                        headers=headers)


async def _refused(request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, RequestError):
        raise error
    return error_response(error.status, str(error), error.headers())


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, HTTPException):
        raise error
    return error_response(error.status_code, str(error.detail), dict(error.headers or {}))


async def _invalid(request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, RequestValidationError):
        raise error
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    return error_response(422, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every refusal of `app` as an error body."""
    app.add_exception_handler(RequestError, _refused)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
