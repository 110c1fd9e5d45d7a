"""Prometheus metrics for one app, on its own CollectorRegistry (never the global one), so two apps in one
process (tests, several bundles) count separately. ``GET /metrics`` serves them in the text format."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # seconds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # images per model call
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """Requests by route and status, request latency, batch sizes and model time, errors by reason."""

    def __init__(self, routes: set[str]):
        self.routes = routes  # known paths; anything else counts as "other", so random URLs add no series
        self.registry = CollectorRegistry()
        self.requests = Counter("honed_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("honed_request_seconds", "Time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("honed_batch_size", "Images per model call", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.model_seconds = Histogram("honed_batch_seconds", "Time of one model call", buckets=LATENCY_BUCKETS,
                                       registry=self.registry)
        self.images = Counter("honed_images", "Images predicted", registry=self.registry)
        self.errors = Counter("honed_errors", "Refused or failed requests by reason", ["reason"],
                              registry=self.registry)
        self.queue_depth = Gauge("honed_queue_depth", "Images waiting for the model", registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_seconds.observe(seconds)
        self.images.inc(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def route_of(self, path: str) -> str:
        return path if path in self.routes else "other"


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP answer by route and status and times it (404s included)."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: ServeMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.metrics.route_of(scope.get("path", ""))
        status = {"code": 500}  # what a crash inside the app would have sent
        start = time.perf_counter()

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            self.metrics.requests.labels(route, scope.get("method", ""), str(status["code"])).inc()
