"""The HTTP service: ``create_app(model, settings)`` gives a FastAPI app serving one bundle.

Why FastAPI + uvicorn: it is the stack most teams already deploy Python models on (ASGI, behind any proxy,
run by uvicorn/gunicorn), it writes the OpenAPI schema (``/docs``) from the routes, and its TestClient lets
the tests drive every route in-process. LitServe would add batching of its own but hides the loop we need
to bound (queue, timeouts, per-app metrics); TorchServe needs Java and pickled .mar archives.

Routes: ``POST /predict``, ``GET /health``, ``GET /metadata``, ``GET /metrics``, ``GET /`` (a small page).
With tokens (``honed.serve.auth``) /predict and /metadata need ``Authorization: Bearer TOKEN`` (else 401);
/health, /metrics, the page and the schema stay open. Each client (token or address) has its own limits on
requests and images in flight (``honed.serve.limits.ClientLimits``), checked before the body is read.
Each image is decoded with the bundle's own preprocessing in the threadpool, then waits in the batcher
(see ``honed.serve.batcher``) for the model thread; answers equal ``honed.load(bundle).predict_proba``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import numpy as np
import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from honed.data.decode import DecodeError, decode_to_tensor
from honed.serve.auth import authorize, read_tokens
from honed.serve.batcher import Batcher, BatcherStopped, QueueFull
from honed.serve.inputs import Part, read_parts
from honed.serve.limits import ApiError, ClientLimits, ServeSettings, decode_failure
from honed.serve.telemetry import CONTENT_TYPE, MetricsMiddleware, ServeMetrics
from honed.serve.model import ServedModel, load_served
from honed.serve.page import page_html
from honed.serve.schema import HEALTH_RESPONSES, METADATA_RESPONSES, PREDICT_BODY, PREDICT_RESPONSES

log = logging.getLogger(__name__)
ROUTES = {"/", "/predict", "/health", "/metadata", "/metrics", "/docs", "/openapi.json"}
ENV_CONFIG = "HONED_SERVE_CONFIG"  # how `honed serve --workers N` hands the bundle to each worker process


def create_app(model: ServedModel, settings: ServeSettings | None = None, *, tokens: Sequence[str] = ()) -> FastAPI:
    """A FastAPI app serving ``model``; its batcher's model thread runs while the app's lifespan does.
    ``tokens``: the bearer tokens /predict and /metadata accept (none: open to every caller)."""
    settings = settings or ServeSettings()
    tokens = tuple(tokens)
    clients = ClientLimits(settings)
    caller = _caller(tokens)
    metrics = ServeMetrics(ROUTES)
    batcher = Batcher(lambda batch: model.predictor.predict_batch(batch), max_batch=settings.max_batch,
                      max_wait_s=settings.max_wait_ms / 1000, max_queue=settings.max_queue,
                      on_batch=metrics.observe_batch)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(batcher.stop)

    app = FastAPI(title=f"honed: {model.name}", version=_version(), lifespan=lifespan,
                  description="Predictions from a honed bundle. POST images to /predict.")
    app.state.model, app.state.settings, app.state.metrics, app.state.batcher = model, settings, metrics, batcher
    app.state.clients = clients
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _add_error_handlers(app, metrics)

    @app.post("/predict", summary="Top-k classes (or values) for one or many images", openapi_extra=PREDICT_BODY,
              responses=PREDICT_RESPONSES)
    async def predict(request: Request, client: str = Depends(caller),
                      top_k: int = Query(5, ge=1, le=10000, description="Classes per image, best first."),
                      preview: bool = Query(False, description="Also return each preprocessed image as a PNG "
                                                               "data URL.")) -> dict[str, Any]:
        deadline = time.monotonic() + settings.timeout_s
        clients.enter(client)  # before the body is read: a slow upload holds its client's slot
        taken = 0
        try:
            parts = await read_parts(request, max_bytes=settings.max_body_bytes, max_images=settings.max_images)
            clients.take(client, len(parts))
            taken = len(parts)
            images = await run_in_threadpool(_decode_all, parts, model.predictor.image_size, settings.max_pixels)
            rows = await _predicted(batcher, images, deadline, settings)
        finally:
            clients.leave(client, taken)
        answers = [_answer(model, name, row, top_k) for (name, _), row in zip(parts, rows)]
        if preview:
            for answer, image in zip(answers, images):
                answer["preprocessed"] = _png_data_url(image)
        return {"model": model.name, "task": model.predictor.task, "predictions": answers}

    @app.get("/health", summary="Whether the model thread is up, and the queue depth", responses=HEALTH_RESPONSES)
    async def health() -> JSONResponse:
        ok = batcher.alive
        body = {"status": "ok" if ok else "unavailable", "model": model.name, "device": str(model.predictor.device),
                "queue": batcher.depth, "max_batch": settings.max_batch}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metadata", summary="Classes, preprocessing, metrics and model card of the bundle",
             dependencies=[Depends(caller)], responses=METADATA_RESPONSES)
    async def metadata() -> dict[str, Any]:
        return {**model.metadata(), "limits": settings.to_dict(), "auth": "bearer" if tokens else "none"}

    @app.get("/metrics", summary="Prometheus metrics (text format)", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html(model.name))

    return app


def app_from_bundle(bundle: str, *, settings: ServeSettings | None = None, device: str = "auto",
                    backend: str = "torch", tta: str | None = None, tokens: Sequence[str] = (),
                    calibrate: bool = True) -> FastAPI:
    """Load a local bundle and serve it (``tokens``: see ``create_app``; ``calibrate=False``: raw
    probabilities, no temperature)."""
    return create_app(load_served(bundle, device=device, backend=backend, tta=tta, calibrate=calibrate), settings,
                      tokens=tokens)


def app_from_env() -> FastAPI:
    """The app factory each uvicorn worker process calls (``--workers N``): the bundle and settings come
    from the JSON in $HONED_SERVE_CONFIG, written by ``honed serve``; the tokens from the token file it names,
    else $HONED_SERVE_TOKEN (the JSON never holds a token)."""
    config = json.loads(os.environ[ENV_CONFIG])
    return app_from_bundle(config["bundle"], settings=ServeSettings(**config["settings"]), device=config["device"],
                           backend=config["backend"], tta=config["tta"], tokens=read_tokens(config.get("token_file")),
                           calibrate=config.get("calibrate", True))


# ---------------------------------------------------------------------------------------------- helpers


def _caller(tokens: tuple[str, ...]) -> Callable[..., Awaitable[str]]:
    """The dependency that names the caller (its client key) or refuses it (401). It runs before the
    route's parameters are validated; with tokens it also declares the bearer scheme in the OpenAPI schema."""
    if not tokens:
        async def anyone(request: Request) -> str:
            return authorize(request, tokens)

        return anyone
    bearer = HTTPBearer(auto_error=False, description="a token from the server's --token-file or $HONED_SERVE_TOKEN")

    async def token_holder(request: Request, _: Any = Depends(bearer)) -> str:
        return authorize(request, tokens)

    return token_holder


def _decode_all(parts: list[Part], size: int, max_pixels: int) -> list[torch.Tensor]:
    """Each part through the bundle's deterministic preprocessing (as ``honed predict`` decodes files)."""
    images = []
    for name, data in parts:
        try:
            images.append(decode_to_tensor(data, size, max_pixels=max_pixels, reject_placeholders=False))
        except DecodeError as error:
            raise decode_failure(error, name) from None
        except Exception as error:  # decode promises DecodeError; a library surprise is still the file's fault
            log.warning("unexpected failure decoding %s: %r", name, error)
            raise ApiError(422, f"{name}: cannot be decoded ({type(error).__name__})", part=name) from None
    return images


async def _predicted(batcher: Batcher, images: list[torch.Tensor], deadline: float,
                     settings: ServeSettings) -> list[np.ndarray]:
    """Queue the images and wait for their rows, within the request's deadline."""
    try:
        futures = batcher.submit(images)
    except QueueFull:
        raise ApiError(429, f"the queue is full ({settings.max_queue} images waiting): retry after "
                       f"{settings.retry_after_s} s", headers={"Retry-After": str(settings.retry_after_s)}) from None
    except BatcherStopped:
        raise ApiError(503, "the server is shutting down: retry on another instance") from None
    waiting = [asyncio.wrap_future(f) for f in futures]
    try:
        return list(await asyncio.wait_for(asyncio.gather(*waiting), max(0.0, deadline - time.monotonic())))
    except asyncio.TimeoutError:
        for future in futures:
            future.cancel()  # the model thread skips images nobody waits for
        raise ApiError(504, f"no answer within {settings.timeout_s:g} s (--timeout-s): the server is overloaded; "
                       "retry later or send fewer images") from None


def _answer(model: ServedModel, name: str, row: np.ndarray, top_k: int) -> dict[str, Any]:
    p = model.predictor
    if not p.task_type.is_classification:  # values per target; classification answers its top classes
        return {"name": name, "values": {col: float(v) for col, v in zip(p.target_columns, row)}}
    order = np.argsort(-row)[: max(1, min(top_k, len(p.classes)))]
    return {"name": name, "top_k": [{"label": p.classes[i], "probability": float(row[i])} for i in order]}


def _png_data_url(image: torch.Tensor) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _add_error_handlers(app: FastAPI, metrics: ServeMetrics) -> None:
    """Every refusal is JSON {"error", "status", ["part"]}, counted by reason."""

    def refuse(error: ApiError) -> JSONResponse:
        metrics.errors.labels(error.reason).inc()
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return refuse(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query") or "request"
        return refuse(ApiError(422, f"{where}: {first.get('msg', 'invalid')}", part=where, reason="bad_parameter"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return refuse(ApiError(error.status_code, str(error.detail), headers=dict(error.headers or {})))

    @app.exception_handler(Exception)
    async def failed(_: Request, error: Exception) -> JSONResponse:  # a bug or a model failure: say so, in JSON
        log.exception("request failed")
        metrics.errors.labels("internal").inc()
        return JSONResponse({"error": f"prediction failed ({type(error).__name__}); see the server log",
                             "status": 500}, status_code=500)


def _version() -> str:
    from honed.version import __version__

    return __version__
