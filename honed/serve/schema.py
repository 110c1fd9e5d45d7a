"""What the OpenAPI schema (``/openapi.json``, ``/docs``) says about the routes that FastAPI cannot see:
/predict reads its body itself (to stop a huge upload early), so its three body forms and every refusal are
written here. The fuzzing suite (tests/reliability/test_fuzz_http.py) drives the app from this schema and
checks each answer against it: a limit must answer with a status and body documented below.
"""

from __future__ import annotations

from typing import Any

ERROR = {"type": "object", "required": ["error", "status"], "properties": {
    "error": {"type": "string", "description": "what went wrong and what to do about it"},
    "status": {"type": "integer"},
    "part": {"type": "string", "description": "the image or parameter at fault"}}}
BINARY = {"type": "string", "format": "binary"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def _refusal(description: str, *, retry: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": ERROR}}}
    if retry:
        answer["headers"] = RETRY_AFTER
    return answer


UNAUTHORIZED = {401: _refusal("no or wrong bearer token (servers started with --token-file or $HONED_SERVE_TOKEN)")}

PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": BINARY, "description": "image files; every file part is an image"}}}},
    "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "items": {"type": "string"}, "description": "base64 or data: URLs"},
        "names": {"type": "array", "items": {"type": "string"}, "description": "one name per image"}}}},
    "image/png": {"schema": BINARY},
    "image/jpeg": {"schema": BINARY},
    "application/octet-stream": {"schema": BINARY}}}}

PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _refusal("malformed body: JSON that does not parse, or a broken multipart body"),
    **UNAUTHORIZED,
    413: _refusal("body over --max-body-mb, or more images than --max-images"),
    415: _refusal("an unsupported Content-Type, or a part that is not an image"),
    422: _refusal("no image; an image that cannot be decoded or has more pixels than --max-pixels; a bad "
                  "parameter (top_k, preview) or JSON field"),
    429: _refusal("the queue is full (--max-queue), or this client has --max-client-requests requests or "
                  "--max-client-queue images in flight", retry=True),
    503: _refusal("the server is shutting down"),
    504: _refusal("no answer within --timeout-s"),
}

METADATA_RESPONSES: dict[int | str, dict[str, Any]] = {**UNAUTHORIZED}
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {503: {"description": "the model thread is down"}}
