"""Fuzzed HTTP against the server (``pytest -m reliability tests/reliability/test_fuzz_http.py``).

Two drivers, both through the ASGI app in-process (httpx/Starlette's test transport, the real routes,
batcher thread and limits):

1. schemathesis 4 over the OpenAPI schema: every route, schema-valid and schema-invalid requests (query
   strings, headers, the three documented /predict bodies), with and without the bearer token. Every answer
   must be documented in the schema (status, JSON body, headers such as Retry-After), never a 5xx.
2. hypothesis and fixed batteries for what a schema cannot describe: malformed multipart, wrong content
   types, huge and empty bodies, bad top_k, base64 that is not an image, many images in one request, one
   client flooding the queue.

What must hold: no 5xx, each answer within HANG_S, each limit answers with its documented status, the
per-client counters and the queue empty afterwards, and memory flat over repeated rounds. The figures are
written to $HONED_FUZZ_FIGURES (JSON) when set, for benchmarks/RELIABILITY.md.
"""

from __future__ import annotations

import base64
import collections
import faulthandler
import gc
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis import strategies as st
from PIL import Image

from honed.serve import ServeSettings, create_app, load_served

pytestmark = pytest.mark.reliability

TOKEN = "fuzzing-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HANG_S = 10.0  # no answer may take longer (the server's own --timeout-s below is 5 s)
LIMITS = ServeSettings(max_body_mb=0.25, max_images=8, max_queue=32, max_client_queue=16, max_client_requests=4,
                       max_pixels=250_000, timeout_s=5.0, max_wait_ms=2.0)
PREDICT_STATUSES = {200, 400, 401, 413, 415, 422, 429, 503, 504}  # as honed.serve.schema documents them
EXAMPLES = int(os.environ.get("HONED_FUZZ_EXAMPLES", "60"))  # per operation, mode and auth: x 2 x 2 x 3 routes


def _png(size=(12, 9), color=(120, 30, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from honed.export.bundle import export_bundle
    from honed.training.fit import train
    from tests.conftest import write_color_folder
    from tests.training.test_train import tiny_config

    data = write_color_folder(tmp_path_factory.mktemp("fuzz-data") / "colors")
    run = train(tiny_config(data, tmp_path_factory.mktemp("fuzz-ws"), epochs=1)).run_dir
    return export_bundle(run, tmp_path_factory.mktemp("fuzz-out") / "bundle").path


@pytest.fixture
def session(bundle):
    """schemathesis's in-process client for a fresh app, entered once: the app's lifespan (its batcher thread)
    runs for the test (schemathesis's pytest plugin ends every ASGI lifespan when a test ends). Every other
    client below sends without entering it again."""
    from schemathesis.python.asgi import get_client

    app = create_app(load_served(bundle, device="cpu"), LIMITS, tokens=(TOKEN,))
    faulthandler.dump_traceback_later(1800, exit=True)  # a hang fails the run with every thread's stack
    with get_client(app) as client:
        yield client
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def app(session):
    return session.app


@pytest.fixture(scope="module")
def figures():
    found: dict = {"statuses": collections.Counter(), "slowest_s": 0.0, "requests": 0}
    yield found
    target = os.environ.get("HONED_FUZZ_FIGURES")
    if target:
        found["statuses"] = {str(k): v for k, v in sorted(found["statuses"].items())}
        Path(target).write_text(json.dumps(found, indent=2))


class Checked:
    """A TestClient whose every answer is checked: no 5xx, within HANG_S, a JSON refusal; counted."""

    def __init__(self, app, figures, label: str):
        self.client = TestClient(app, raise_server_exceptions=False)
        self.figures, self.label = figures, label

    def request(self, method: str, path: str, **kwargs):
        start = time.monotonic()
        answer = self.client.request(method, path, **kwargs)
        took = time.monotonic() - start
        _record(self.figures, f"{self.label} {answer.status_code}", took)
        assert answer.status_code < 500 or answer.status_code in (503, 504), (answer.status_code, answer.text[:300])
        assert took < HANG_S, f"{method} {path} took {took:.1f} s"
        if path == "/predict" and method == "POST":
            assert answer.status_code in PREDICT_STATUSES, answer.status_code
            if answer.status_code >= 400:
                assert answer.json()["status"] == answer.status_code and answer.json()["error"]
        return answer


def _record(figures: dict, key: str, took: float) -> None:
    figures["statuses"][key] += 1
    figures["requests"] += 1
    figures["slowest_s"] = max(figures["slowest_s"], round(took, 3))


# ---------------------------------------------------------------------------------------------- schemathesis


def test_every_route_under_schemathesis(app, session, figures):
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                                   response_headers_conformance, response_schema_conformance,
                                                   status_code_conformance)

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {"POST /predict", "GET /health",
                                                                     "GET /metadata", "GET /metrics"}
    seen = collections.Counter()
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for headers in (AUTH, {}):
                @given(case=op.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                def run(case):
                    start = time.monotonic()
                    response = case.call(session=session, headers=headers)
                    took = time.monotonic() - start
                    seen[(op.path, response.status_code)] += 1
                    _record(figures, f"schemathesis {op.method.upper()} {op.path} {response.status_code}", took)
                    assert took < HANG_S
                    extra = [negative_data_rejection] if mode == GenerationMode.NEGATIVE and headers else []
                    case.validate_response(response, checks=checks + extra)

                try:
                    run()
                except Unsatisfiable:  # nothing to break in a route without parameters or body
                    assert mode == GenerationMode.NEGATIVE and op.path != "/predict"
                    figures.setdefault("no_negative_cases", []).append(f"{op.method.upper()} {op.path}")
    assert seen[("/predict", 401)] > 0 and seen[("/metadata", 401)] > 0  # without the token
    assert sum(v for (path, status), v in seen.items() if path == "/predict" and status == 200) > 0
    assert sum(v for (path, status), v in seen.items() if path == "/predict" and status == 422) > 0


# ---------------------------------------------------------------------------------------------- hostile bodies


def _multipart(parts: list[tuple[str, str, str, bytes]], boundary: str = "bnd") -> bytes:
    chunks = []
    for field, filename, kind, data in parts:
        head = f'Content-Disposition: form-data; name="{field}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\n{head}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


def hostile_requests() -> list[tuple[str, dict, dict, bytes, set[int]]]:
    """(label, query, headers, body, statuses the limits document for it), with the token."""
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    mp = {"Content-Type": "multipart/form-data; boundary=bnd", **AUTH}
    js = {"Content-Type": "application/json", **AUTH}
    png = {"Content-Type": "image/png", **AUTH}
    good = _multipart([("files", "a.png", "image/png", PNG)])
    cases = [
        ("multipart: cut in the headers", {}, mp, good[:30], {400, 422}),
        ("multipart: cut in the data", {}, mp, good[:-20], {400, 415, 422}),
        ("multipart: no closing boundary", {}, mp, good[: good.rindex(b"--bnd--")], {400, 415, 422}),
        ("multipart: boundary missing", {}, {"Content-Type": "multipart/form-data", **AUTH}, good, {400, 422}),
        ("multipart: other boundary", {}, {"Content-Type": "multipart/form-data; boundary=zzz", **AUTH}, good,
         {400, 422}),
        ("multipart: header line of 200 kB", {}, mp, b"--bnd\r\nX: " + b"a" * 200_000 + b"\r\n\r\nx\r\n--bnd--\r\n",
         {400, 413, 422}),
        ("multipart: fields but no file", {}, mp, b'--bnd\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n'
                                                  b"--bnd--\r\n", {422}),
        ("multipart: a text file", {}, mp, _multipart([("files", "a.png", "text/plain", b"hello")]), {415}),
        ("content type: text/plain", {}, {"Content-Type": "text/plain", **AUTH}, PNG, {415}),
        ("content type: none", {}, AUTH, PNG, {415}),
        ("content type: application/xml", {}, {"Content-Type": "application/xml", **AUTH}, b"<a/>", {415}),
        ("content type: image/svg+xml", {}, {"Content-Type": "image/svg+xml", **AUTH},
         b'<svg xmlns="http://www.w3.org/2000/svg"/>', {415}),
        ("content type: json body as image/png", {}, png, b'{"images": []}', {415}),
        ("content type: png body as json", {}, js, PNG, {400}),
        ("empty: image/png", {}, png, b"", {415}),
        ("empty: json", {}, js, b"", {400}),
        ("empty: multipart", {}, mp, b"", {400, 422}),
        ("empty: json list", {}, js, b'{"images": []}', {422}),
        ("huge: body over the limit", {}, png, PNG + b"\x00" * 300_000, {413}),
        ("huge: declared length over the limit", {}, {**png, "Content-Length": str(10**12)}, PNG, {413}),
        ("huge: json of 300 kB", {}, js, json.dumps({"images": [b64(b"x" * 220_000)]}).encode(), {413}),
        ("huge: pixels in a small file", {}, png, _png((2000, 2000)), {422}),
        ("base64: text", {}, js, json.dumps({"images": [b64(b"hello, not an image")]}).encode(), {415}),
        ("base64: invalid", {}, js, json.dumps({"images": ["@@@not base64@@@"]}).encode(), {422}),
        ("base64: truncated png", {}, js, json.dumps({"images": [b64(PNG[:40])]}).encode(), {415, 422}),
        ("base64: data URL of html", {}, js, json.dumps({"images": ["data:image/png;base64," + b64(b"<html>")]}
                                                        ).encode(), {415}),
        ("base64: a number", {}, js, json.dumps({"images": [12]}).encode(), {422}),
        ("base64: nested lists", {}, js, json.dumps({"images": [[["x"]]]}).encode(), {422}),
        ("json: deeply nested", {}, js, b"[" * 100_000 + b"]" * 100_000, {400, 413}),
        ("json: not an object", {}, js, b"[1, 2]", {422}),
        ("many: exactly max images", {}, js, json.dumps({"images": [b64(PNG)] * LIMITS.max_images}).encode(),
         {200}),
        ("many: one over max images (json)", {}, js, json.dumps({"images": [b64(PNG)] * (LIMITS.max_images + 1)}
                                                                ).encode(), {413}),
        ("many: 1,000 multipart files", {}, mp, _multipart([("files", f"{i}.png", "image/png", b"x")
                                                              for i in range(1000)]), {413}),
        ("many: 5,000 empty json items", {}, js, json.dumps({"images": [""] * 5000}).encode(), {413}),
    ]
    for top_k in ("0", "-1", "10001", "abc", "1e3", "", str(2**70), "NaN", "5.5"):
        cases.append((f"top_k={top_k!r}", {"top_k": top_k}, png, PNG, {422}))
    cases.append(("top_k twice", {"top_k": ["1", "x"]}, png, PNG, {200, 422}))
    cases.append(("preview=maybe", {"preview": "maybe"}, png, PNG, {422}))
    cases.append(("no token", {}, {"Content-Type": "image/png"}, PNG, {401}))
    cases.append(("wrong token", {}, {"Content-Type": "image/png", "Authorization": "Bearer " + "x" * 30}, PNG,
                  {401}))
    cases.append(("token of another scheme", {}, {"Content-Type": "image/png", "Authorization": f"Basic {TOKEN}"},
                  PNG, {401}))
    return cases


def _hostile_round(app, figures) -> dict[str, int]:
    client = Checked(app, figures, "hostile")
    got = {}
    for label, query, headers, body, expected in hostile_requests():
        answer = client.request("POST", "/predict", params=query, headers=headers, content=body)
        assert answer.status_code in expected, (label, answer.status_code, answer.text[:200])
        got[label] = answer.status_code
    return got


def test_hostile_bodies_get_their_documented_status(app, figures):
    got = _hostile_round(app, figures)
    figures["hostile"] = got
    assert app.state.batcher.depth == 0 and not app.state.clients.requests and not app.state.clients.images


def test_one_client_flooding_gets_429_with_retry_after_and_others_still_get_in(app, figures):
    flood = Checked(app, figures, "flood")
    answers: list = []

    def one() -> None:
        body = json.dumps({"images": [base64.b64encode(PNG).decode()] * LIMITS.max_images}).encode()
        answers.append(flood.request("POST", "/predict", headers={"Content-Type": "application/json", **AUTH},
                                     content=body))

    threads = [threading.Thread(target=one) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_S * 3)
    statuses = collections.Counter(a.status_code for a in answers)
    refused = [a for a in answers if a.status_code == 429]
    figures["flood"] = {str(k): v for k, v in statuses.items()}
    assert len(answers) == 24 and set(statuses) <= {200, 429} and statuses[200] > 0 and refused
    assert all(a.headers["Retry-After"] == "1" for a in refused)
    assert all("per client" in a.json()["error"] for a in refused)  # the client's share, before the queue's
    assert not app.state.clients.requests and app.state.batcher.depth == 0


@settings(max_examples=EXAMPLES * 3, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.binary(max_size=2000), st.just(PNG).map(lambda b: b[: len(b) // 2]),
                      st.builds(lambda cut, junk: PNG[:cut] + junk, st.integers(0, len(PNG)), st.binary(max_size=64))),
       kind=st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "application/json",
                             "multipart/form-data; boundary=bnd", "multipart/form-data", "text/plain", "image/",
                             "application/json; charset=utf-16", "multipart/form-data; boundary=\"\""]),
       top_k=st.one_of(st.none(), st.integers(-3, 20_000).map(str), st.text(max_size=5)))
def test_generated_bodies_never_get_5xx_nor_hang(app, figures, body, kind, top_k):
    query = {} if top_k is None else {"top_k": top_k}
    Checked(app, figures, "generated").request("POST", "/predict", params=query,
                                               headers={"Content-Type": kind, **AUTH}, content=body)


def test_memory_is_flat_over_repeated_rounds(app, figures):
    """Eight rounds of the hostile battery (about 1 MB of bodies each): resident memory after the second round
    (warm caches, the allocator's pools) may not grow by more than ``growth_mib`` to the eighth, less than
    the bodies of those six rounds (a server that kept each body would pass it)."""
    growth_mib = 5.0
    rss = []
    for _ in range(8):
        _hostile_round(app, figures)
        gc.collect()
        rss.append(round(_rss_mib(), 1))
    figures["rss_mib_by_round"] = rss
    assert rss[-1] - rss[1] < growth_mib, rss
    assert not app.state.clients.requests and not app.state.clients.images and app.state.batcher.depth == 0
