"""The server's settings and limits, and the one error type its routes raise: a status and a JSON message.

Every limit answers with a JSON body ``{"error": ..., "part": ...}`` and the status a client can act on:
401 no or wrong bearer token, 413 body too large, 415 not an image, 422 undecodable or too many pixels,
429 queue full or the client's own share used up (both with Retry-After), 504 too slow. Nothing a client
sends may turn into a 5xx.

Per-client limits (``ClientLimits``): one client (its token when each client has its own, else its address,
see ``honed.serve.auth``) may have ``max_client_requests`` requests in flight and ``max_client_queue``
images waiting or predicting, so one busy client cannot take the whole queue from the others.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from honed.data.decode import DEFAULT_MAX_PIXELS, DecodeError
from honed.errors import HonedError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """How ``honed serve`` batches and what it refuses; the CLI options map onto these fields one to one."""

    max_batch: int = 32  # images per model call; 1 turns dynamic batching off
    max_wait_ms: float = 5.0  # how long the first queued image waits for others to join its batch
    max_queue: int = 256  # images waiting for the model; beyond this a request gets 429
    max_images: int = 64  # images in one request
    max_body_mb: float = 20.0  # request body, all images together
    max_pixels: int = DEFAULT_MAX_PIXELS  # per image, from its header, before any pixel is decoded
    timeout_s: float = 30.0  # queue wait + prediction, per request; beyond this 504
    retry_after_s: int = 1  # what a 429 tells the client to wait
    max_client_requests: int = 8  # requests one client may have in flight; beyond this 429
    max_client_queue: int = 0  # images one client may have queued or predicting; 0: half of max_queue, at least
    # max_images (client_queue); beyond it 429

    def __post_init__(self) -> None:
        checks = {"--max-batch": self.max_batch >= 1, "--max-wait-ms": self.max_wait_ms >= 0,
                  "--max-queue": self.max_queue >= 1, "--max-images": self.max_images >= 1,
                  "--max-body-mb": self.max_body_mb > 0, "--max-pixels": self.max_pixels >= 1,
                  "--timeout-s": self.timeout_s > 0, "retry_after_s": self.retry_after_s >= 1,
                  "--max-client-requests": self.max_client_requests >= 1,
                  "--max-client-queue": self.max_client_queue >= 0}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise HonedError(f"{', '.join(bad)} out of range: sizes and counts must be at least 1, times positive")
        if self.max_queue < self.max_images:
            raise HonedError(f"--max-queue ({self.max_queue}) must hold at least one full request "
                             f"(--max-images {self.max_images}): raise it")
        if self.max_client_queue and not self.max_images <= self.max_client_queue <= self.max_queue:
            raise HonedError(f"--max-client-queue ({self.max_client_queue}) must lie between --max-images "
                             f"({self.max_images}) and --max-queue ({self.max_queue})")

    @property
    def client_queue(self) -> int:
        """The images one client may have in flight: ``max_client_queue``, or half the queue when it is 0."""
        return self.max_client_queue or max(self.max_images, self.max_queue // 2)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MIB)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, a message naming the fix, the offending ``part``."""

    def __init__(self, status: int, message: str, *, part: str | None = None,
                 headers: dict[str, str] | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.part = part
        self.headers = headers or {}
        self.reason = reason or _REASONS.get(status, "bad_request")  # a short label for the error metric

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message, "status": self.status}
        if self.part is not None:
            out["part"] = self.part
        return out


_REASONS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
            415: "not_an_image", 422: "undecodable", 429: "queue_full", 503: "unavailable", 504: "timeout"}

# Decode failures that mean "this is not an image at all" (415); everything else was an image that
# could not be used (422: truncated, corrupt, too many pixels, empty).
_NOT_AN_IMAGE = ("zero bytes", "not an image", "not a raster image", "unsupported format", "macOS metadata")


def decode_failure(error: DecodeError, part: str) -> ApiError:
    """The status and message for an image that failed to decode, naming the part it came in."""
    if error.reason.startswith("too many pixels"):
        return ApiError(422, f"{part}: {error.reason}; send a smaller image (limit --max-pixels)", part=part,
                        reason="too_many_pixels")
    if error.reason.startswith(_NOT_AN_IMAGE):
        return ApiError(415, f"{part}: {error.reason}; send PNG, JPEG, WebP, GIF, BMP or TIFF images", part=part)
    return ApiError(422, f"{part}: cannot be decoded ({error.reason})", part=part)


class ClientLimits:
    """What each client has in flight: requests and images. Used from the event loop only (no lock needed:
    every call runs between two awaits)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.requests: Counter[str] = Counter()
        self.images: Counter[str] = Counter()

    def enter(self, client: str) -> None:
        """Count a request in, or 429 when the client already has ``max_client_requests`` in flight."""
        if self.requests[client] >= self.settings.max_client_requests:
            raise self._refusal(f"{self.requests[client]} of your requests are in flight (the limit per client "
                                f"is {self.settings.max_client_requests}, --max-client-requests)")
        self.requests[client] += 1

    def take(self, client: str, images: int) -> None:
        """Count ``images`` in for the client, or 429 when they would pass its share of the queue."""
        held, limit = self.images[client], self.settings.client_queue
        if held + images > limit and limit < self.settings.max_queue:  # a share of the whole queue is no limit:
            # the queue's own 429 answers
            raise self._refusal(f"you have {held} images in flight and sent {images}; the limit per client is "
                                f"{limit} (--max-client-queue)")
        self.images[client] += images

    def leave(self, client: str, images: int) -> None:
        """Count a finished request (and the ``images`` it took) out, whatever became of it."""
        for counter, amount in ((self.requests, 1), (self.images, images)):
            counter[client] -= amount
            if counter[client] <= 0:
                del counter[client]  # no entry per client ever seen: the counters stay as small as the load

    def _refusal(self, what: str) -> ApiError:
        after = self.settings.retry_after_s
        return ApiError(429, f"{what}: wait for answers, retry after {after} s", reason="client_limit",
                        headers={"Retry-After": str(after)})
