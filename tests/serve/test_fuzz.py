"""Generated HTTP requests (random methods, paths, query strings, content types, bodies, multipart parts and
JSON): the server answers every one with 2xx or 4xx, never 5xx, and within 5 seconds."""

from __future__ import annotations

import io
import json
import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from honed.serve import ServeSettings, create_app, load_served


def _png(size=(12, 9)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
PATHS = ["/predict", "/predict", "/predict", "/health", "/metadata", "/metrics", "/", "/docs", "/nope", "/predict/x"]
TYPES = ["multipart/form-data", "application/json", "image/png", "image/jpeg", "application/octet-stream",
         "text/plain", "application/x-www-form-urlencoded", "", "multipart/form-data; boundary=", "image/"]

payloads = st.one_of(st.binary(max_size=300), st.just(PNG), st.builds(lambda n: PNG[:n], st.integers(0, len(PNG))),
                     st.builds(lambda b: PNG[:40] + b, st.binary(max_size=60)),
                     st.sampled_from([b"<html>x</html>", b"GIF89a", b"\x00\x05\x16\x07rest", b"\xff\xd8\xff"]))
texts = st.text(max_size=20)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                           max_leaves=12)
queries = st.one_of(
    st.fixed_dictionaries({}, optional={"top_k": st.integers(1, 5).map(str), "preview": st.sampled_from(["true", "0"])}),
    st.dictionaries(st.sampled_from(["top_k", "preview", "x", "top_k[]", ""]),
                    st.one_of(st.integers(-5, 100_000).map(str), texts, st.sampled_from(["true", "no", "1"])),
                    max_size=3))


def _multipart(parts: list[tuple[str, str, str, bytes]], boundary: str) -> bytes:
    chunks = []
    for field, filename, kind, data in parts:
        head = f'Content-Disposition: form-data; name="{field}"'
        if filename:
            head += f'; filename="{filename}"'
        chunks.append(f"--{boundary}\r\n{head}\r\nContent-Type: {kind}\r\n\r\n".encode("utf-8", "replace") + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


parts = st.lists(st.tuples(st.sampled_from(["files", "file", "x", ""]), st.sampled_from(["a.png", "", "b.jpg", "c"]),
                           st.sampled_from(["image/png", "text/plain", ""]), payloads), max_size=4)


@st.composite
def requests(draw):
    if draw(st.integers(0, 9)) < 7:  # mostly what the server is for
        method, path = "POST", "/predict"
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]))
        path = draw(st.sampled_from(PATHS))
    kind = draw(st.sampled_from(["raw", "json", "images-json", "multipart", "broken-multipart"]))
    headers = {}
    if kind == "raw":
        body = draw(payloads)
        printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
        headers["Content-Type"] = draw(st.sampled_from(TYPES) | printable)
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
        headers["Content-Type"] = "application/json"
    elif kind == "images-json":
        import base64

        items = draw(st.lists(st.one_of(payloads.map(lambda b: base64.b64encode(b).decode()), texts, st.integers()),
                              max_size=4))
        body = json.dumps({"images": items, "names": draw(st.none() | st.lists(texts, max_size=4))}).encode()
        headers["Content-Type"] = "application/json"
    else:
        boundary = draw(st.sampled_from(["bnd", "x" * 70, "a b"]))
        body = _multipart(draw(parts), boundary)
        if kind == "broken-multipart":
            body = body[: draw(st.integers(0, len(body)))]
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    return method, path, draw(queries), headers, body


@pytest.fixture(scope="module")
def client(bundle):
    app = create_app(load_served(bundle, device="cpu"),
                     ServeSettings(max_body_mb=0.01, max_images=3, max_queue=8, max_pixels=50_000, timeout_s=4))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(request=requests())
def test_generated_requests_never_get_5xx_nor_hang(client, request):
    method, path, query, headers, body = request
    start = time.monotonic()
    answer = client.request(method, path, params=query, headers=headers, content=body)
    took = time.monotonic() - start
    event(f"{method} {path if path in ('/predict', '/health') else 'other'} -> {answer.status_code}")
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert took < 5.0
    if answer.status_code >= 400 and method != "HEAD" and path in ("/predict", "/nope"):
        assert "error" in answer.json()  # every refusal explains itself in JSON
