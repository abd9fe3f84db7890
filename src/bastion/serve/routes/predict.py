"""`POST /predict`: one image file (multipart field `image` or `file`, or a raw image/* body), guarded."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.formparsers import MultiPartException

from bastion.serve.images import decode_image
from bastion.serve.payloads import RequestError
from bastion.serve.routes.access import authorize, guarantee, guard_inputs, limit, served

__all__ = ["router"]

router = APIRouter()


@router.post("/predict")
async def predict(request: Request) -> JSONResponse:
    """The guard's verdict on one uploaded image, decoded and resized to the model's input."""
    server = served(request)
    limit(server, authorize(server, request, server.api_key), 1)
    data = await _upload(request)
    limits = server.config.limits
    x = decode_image(data, server.input_shape, max_side=limits.max_image_side, resize=limits.resize)
    (verdict,) = await guard_inputs(server, "predict", x[None])
    return JSONResponse({"model": server.name, **verdict, "guarantee": guarantee(server)})


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
