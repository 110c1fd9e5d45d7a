"""``honed.Client``: call a running ``honed serve`` from Python.

    client = honed.Client("http://127.0.0.1:8000", token="...")   # token: else $HONED_SERVE_TOKEN, if set
    client.predict(["cat.jpg", "dog.png"], top_k=3)   # one dict per image: name, top_k (or values)
    client.health(); client.metadata()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

from honed.errors import HonedError

ENV_TOKEN = "HONED_SERVE_TOKEN"  # as honed.serve.auth reads it (the client does not import the server)

Image = Union[str, os.PathLike, bytes]


class Client:
    """A small HTTP client for one server; use it as a context manager or call ``close()``."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, token: str | None = None, timeout: float = 60.0):
        """``token``: the server's bearer token (``honed serve --token-file``), sent as ``Authorization:
        Bearer``; None reads $HONED_SERVE_TOKEN, and sends nothing when that is unset too."""
        self.url = url.rstrip("/")
        self.timeout = timeout
        import httpx  # here, so `import honed` stays light

        token = os.environ.get(ENV_TOKEN, "").strip() if token is None else token.strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def predict(self, images: Image | Sequence[Image], *, top_k: int = 5, preview: bool = False) -> list[dict[str, Any]]:
        """Predictions for image files (paths) or encoded images (bytes), in order: one dict per image with
        its ``name`` and ``top_k`` ([{label, probability}], best first) or ``values`` (regression)."""
        items = [images] if isinstance(images, (str, bytes, os.PathLike)) else list(images)
        if not items:
            raise HonedError("nothing to predict: give image paths or bytes")
        files = [("files", _file_part(item, n)) for n, item in enumerate(items)]
        params = {"top_k": top_k, "preview": str(preview).lower()}
        return self._call("POST", "/predict", files=files, params=params)["predictions"]

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def metadata(self) -> dict[str, Any]:
        """Classes, preprocessing, metrics, model card and limits of the served bundle."""
        return self._call("GET", "/metadata")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise HonedError(f"{self.url}{path} did not answer within {self.timeout:g} s: raise timeout= or "
                             "check the server") from None
        except httpx.TransportError as error:
            raise HonedError(f"cannot reach {self.url} ({error}): start it with `honed serve BUNDLE`") from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            if response.status_code == 401:
                raise HonedError(f"the server at {self.url} needs a bearer token ({message}): pass "
                                 f"honed.Client(url, token=...) or set ${ENV_TOKEN}")
            raise HonedError(f"the server refused {method} {path} ({response.status_code}): {message or body}")
        return body


def _file_part(item: Image, n: int) -> tuple[str, bytes, str]:
    if isinstance(item, (bytes, bytearray)):
        return f"image{n}", bytes(item), "application/octet-stream"
    path = Path(item).expanduser()
    try:
        return path.name, path.read_bytes(), "application/octet-stream"
    except OSError as error:
        raise HonedError(f"cannot read {path} ({error.strerror or error}): give an existing image file") from None
