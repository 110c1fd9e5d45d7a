"""What a POST /predict carries, as (part name, encoded image bytes) pairs, within the body-size limit.

Three forms: multipart uploads (every file part is an image, named by its filename or field), JSON
``{"images": ["<base64>" or "data:image/png;base64,...", ...]}``, or one raw image body (``Content-Type:
image/*`` or ``application/octet-stream``). The body is read in chunks and refused (413) as soon as it passes
the limit, so a huge upload never sits in memory.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from honed.serve.limits import ApiError

Part = tuple[str, bytes]
JSON_TYPES = ("application/json",)
RAW_TYPES = ("application/octet-stream",)


async def read_parts(request: Request, *, max_bytes: int, max_images: int) -> list[Part]:
    """The images of a request, or ApiError (400 malformed, 413 too large, 415 wrong type, 422 none)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind == "multipart/form-data" or kind in JSON_TYPES or kind in RAW_TYPES or kind.startswith("image/")):
        raise ApiError(415, f"unsupported Content-Type {kind or '(none)'!r}: send multipart/form-data uploads, "
                       "JSON {\"images\": [base64, ...]}, or one image body with Content-Type image/*")
    body = await _read_limited(request, max_bytes)
    if kind == "multipart/form-data":
        parts = await _multipart(request, body, max_images)
    elif kind in JSON_TYPES:
        parts = _json(body)
    else:
        parts = [("body", body)]
    if not parts:
        raise ApiError(422, "no images in the request: upload image files (multipart) or send "
                       "{\"images\": [base64, ...]}")
    if len(parts) > max_images:
        raise ApiError(413, f"{len(parts)} images in one request; the limit is {max_images} (--max-images): "
                       "split the request", reason="too_many_images")
    return parts


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, _too_large(max_bytes))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, _too_large(max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> str:
    return f"request body over {max_bytes / (1024 * 1024):g} MiB (--max-body-mb): send fewer or smaller images"


async def _multipart(request: Request, body: bytes, max_images: int) -> list[Part]:
    """File parts in order; form fields that are not files are ignored (a page may send options that way)."""
    sent = False

    async def replay() -> dict[str, Any]:  # the body was already read (under the limit): hand it to the parser
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=max_images + 1, max_fields=1000)
    except Exception as error:  # the multipart parser raises several types for malformed bodies
        detail = getattr(error, "detail", None) or str(error) or type(error).__name__
        if "too many files" in str(detail).lower():
            raise ApiError(413, f"more than {max_images} images in one request (--max-images): split the request",
                           reason="too_many_images") from None
        raise ApiError(400, f"malformed multipart body ({detail}): send files as multipart/form-data parts") from None
    try:
        parts = []
        for n, (field, value) in enumerate(form.multi_items()):
            if isinstance(value, UploadFile):
                parts.append((value.filename or field or f"part {n}", await value.read()))
        return parts
    finally:
        await form.close()


def _json(body: bytes) -> list[Part]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ApiError(400, f"the body is not valid JSON ({error}): send {{\"images\": [base64, ...]}}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("images"), list):
        raise ApiError(422, "JSON bodies must be {\"images\": [base64, ...]}", part="images")
    names = payload.get("names")
    names = names if isinstance(names, list) and len(names) == len(payload["images"]) else None
    parts = []
    for i, text in enumerate(payload["images"]):
        name = str(names[i]) if names else f"images[{i}]"
        parts.append((name, _base64(text, name)))
    return parts


def _base64(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise ApiError(422, f"{name}: must be a base64 string, not {type(text).__name__}", part=name)
    if text.startswith("data:"):  # a data URL, as browsers make them
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"{name}: not valid base64", part=name) from None
