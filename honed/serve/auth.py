"""Who may call the server: bearer tokens (``Authorization: Bearer TOKEN``), and who a caller is for the
per-client limits.

Tokens come from ``--token-file`` (one token a line; ``#`` comments and blank lines skipped; several lines
give each client its own token) or the environment variable ``HONED_SERVE_TOKEN`` (one token). Each
presented token is compared with every configured one by ``hmac.compare_digest``, so the time taken says
nothing about how much of a token was right, nor which one matched.

Open without a token: ``GET /health`` and ``GET /metrics`` (probes and Prometheus scrapers carry no
secrets and reveal only load figures), the page at ``/`` (it asks for the token, then sends it) and the
OpenAPI schema (``/docs``, ``/openapi.json``: the routes, not the model). ``POST /predict`` and
``GET /metadata`` (classes, metrics, model card) need the token when one is configured.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from starlette.requests import Request

from honed.errors import HonedError
from honed.serve.limits import ApiError

ENV_TOKEN = "HONED_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16  # shorter secrets can be guessed; make one with secrets.token_urlsafe(32)
MAKE_ONE = "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


def read_tokens(token_file: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None
                ) -> tuple[str, ...]:
    """The tokens the server accepts: from ``token_file`` when given, else from $HONED_SERVE_TOKEN; none
    (an open server) when neither is set. HonedError for an unreadable or empty file or a short token."""
    env = os.environ if env is None else env
    if token_file:
        path = Path(token_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise HonedError(f"cannot read --token-file {path} ({getattr(error, 'strerror', None) or error}): "
                             "give a text file with one token a line") from None
        tokens = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))
        if not tokens:
            raise HonedError(f"--token-file {path} holds no token: write one token a line; {MAKE_ONE}")
        where = f"--token-file {path}"
    else:
        value = env.get(ENV_TOKEN, "").strip()
        tokens = (value,) if value else ()
        where = f"${ENV_TOKEN}"
    short = [t for t in tokens if len(t) < MIN_TOKEN_CHARS]
    if short:
        raise HonedError(f"a token in {where} has {len(short[0])} characters; use at least {MIN_TOKEN_CHARS}: "
                         f"{MAKE_ONE}")
    if any(any(c.isspace() or not c.isprintable() for c in t) for t in tokens):
        raise HonedError(f"a token in {where} holds spaces or control characters: {MAKE_ONE}")
    return tokens


def token_index(presented: str, tokens: tuple[str, ...]) -> int | None:
    """The index of the configured token equal to ``presented`` (None if none), in constant time: every
    token is compared, in full, whatever the result."""
    given = presented.encode("utf-8", "surrogateescape")
    found = None
    for i, token in enumerate(tokens):
        if hmac.compare_digest(given, token.encode("utf-8")):
            found = i
    return found


def authorize(request: Request, tokens: tuple[str, ...]) -> str:
    """The caller's client key (for the per-client limits), or ApiError 401 when a token is needed and the
    request lacks the right one. Without tokens every caller is known by its address."""
    address = request.client.host if request.client else "unknown"
    if not tokens:
        return address
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    index = token_index(presented.strip(), tokens) if scheme.lower() == "bearer" else None
    if index is None:
        missing = "no" if not presented else "a wrong"
        raise ApiError(401, f"{missing} bearer token: send the header 'Authorization: Bearer TOKEN' with a token "
                       "from the server's --token-file or $HONED_SERVE_TOKEN", reason="unauthorized",
                       headers={"WWW-Authenticate": 'Bearer realm="honed"'})
    return f"token {index}" if len(tokens) > 1 else address  # one token each: the token is the client
