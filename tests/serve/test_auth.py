"""Bearer tokens and per-client limits: /predict and /metadata refuse callers without the token (401, JSON),
/health, /metrics and the page stay open; honed.Client sends the token; one client's requests in flight
cannot take another's place (429 with Retry-After)."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import honed
import honed.serve.auth as auth
from honed.errors import HonedError
from honed.serve import ServeSettings, create_app, load_served
from honed.serve.auth import read_tokens, token_index

TOKEN = "s3cret-token-for-tests-0123456789"
OTHER = "another-client-token-abcdefghijk"


@pytest.fixture(scope="module")
def served(bundle):
    return load_served(bundle, device="cpu")


def _client(served, tokens=(TOKEN,), **settings) -> TestClient:
    return TestClient(create_app(served, ServeSettings(**settings), tokens=tokens), raise_server_exceptions=False)


def _upload(path, n=1):
    return [("files", (f"{i}-{path.name}", path.read_bytes(), "image/png")) for i in range(n)]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_predict_and_metadata_need_the_token_health_metrics_and_page_do_not(served, images):
    with _client(served) as client:
        missing = client.post("/predict", files=_upload(images[0]))
        wrong = client.post("/predict", files=_upload(images[0]), headers=_bearer(TOKEN[:-1] + "x"))
        basic = client.post("/predict", files=_upload(images[0]), headers={"Authorization": f"Basic {TOKEN}"})
        bad_query = client.post("/predict", params={"top_k": "-3"}, files=_upload(images[0]))
        right = client.post("/predict", files=_upload(images[0]), headers=_bearer(TOKEN))
        meta_missing = client.get("/metadata")
        meta = client.get("/metadata", headers=_bearer(TOKEN))
        open_routes = [client.get(path).status_code for path in ("/health", "/metrics", "/", "/openapi.json")]
        schema = client.get("/openapi.json").json()
        metrics = client.get("/metrics").text
    for answer in (missing, wrong, basic, bad_query, meta_missing):
        assert answer.status_code == 401, answer.text
        assert "bearer token" in answer.json()["error"] and answer.json()["status"] == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["error"].startswith("no bearer token") and wrong.json()["error"].startswith("a wrong")
    assert right.status_code == 200 and len(right.json()["predictions"]) == 1
    assert meta.status_code == 200 and meta.json()["auth"] == "bearer" and TOKEN not in meta.text
    assert open_routes == [200, 200, 200, 200]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]  # the schema says how to authenticate
    assert 'honed_errors_total{reason="unauthorized"} 5.0' in metrics


def test_an_open_server_needs_no_token(served, images):
    with _client(served, tokens=()) as client:
        answer = client.post("/predict", files=_upload(images[0]))
        schema = client.get("/openapi.json").json()
        meta = client.get("/metadata").json()
    assert answer.status_code == 200 and meta["auth"] == "none"
    assert "securitySchemes" not in schema.get("components", {})


def test_tokens_come_from_a_file_or_the_environment_and_short_ones_are_refused(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# team tokens\n{TOKEN}\n\n  {OTHER}  \n")
    assert read_tokens(path, env={}) == (TOKEN, OTHER)
    assert read_tokens(None, env={"HONED_SERVE_TOKEN": f" {TOKEN}\n"}) == (TOKEN,)
    assert read_tokens(path, env={"HONED_SERVE_TOKEN": "ignored-when-a-file-is-given"}) == (TOKEN, OTHER)
    assert read_tokens(None, env={}) == ()
    path.write_text("# nothing\n\n")
    with pytest.raises(HonedError, match="holds no token"):
        read_tokens(path, env={})
    with pytest.raises(HonedError, match="at least 16"):
        read_tokens(None, env={"HONED_SERVE_TOKEN": "short"})
    with pytest.raises(HonedError, match="cannot read --token-file"):
        read_tokens(tmp_path / "absent", env={})


def test_every_token_is_compared_in_constant_time_whatever_matches(monkeypatch):
    calls = []

    def counting(a, b):
        calls.append((len(a), len(b)))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    tokens = (TOKEN, OTHER, "third-token-of-the-team-xyz")
    for presented, expected in ((TOKEN, 0), (OTHER, 1), ("nope", None), ("", None)):
        calls.clear()
        assert token_index(presented, tokens) == expected
        assert len(calls) == 3  # no early exit: the time does not say which token matched


def _hold_the_model(served, monkeypatch) -> threading.Event:
    """The model thread waits for the returned event: requests stay in flight until it is set."""
    release = threading.Event()
    original = served.predictor.predict_batch

    def slow(batch):
        release.wait(20)
        return original(batch)

    monkeypatch.setattr(served.predictor, "predict_batch", slow)
    return release


def _in_flight(app, client_key: str, images: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while app.state.clients.images[client_key] < images and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.state.clients.images[client_key] >= images


def test_one_client_cannot_take_the_whole_queue(served, images, monkeypatch):
    release = _hold_the_model(served, monkeypatch)
    client = _client(served, tokens=(TOKEN, OTHER), max_images=3, max_queue=8, max_client_queue=4,
                     max_client_requests=2, max_wait_ms=0)
    app = client.app
    answers: dict[str, int] = {}

    def send(key: str, token: str, n: int) -> None:
        answers[key] = client.post("/predict", files=_upload(images[0], n), headers=_bearer(token)).status_code

    with client:
        first = threading.Thread(target=send, args=("first", TOKEN, 3))
        first.start()
        _in_flight(app, "token 0", 3)
        over_share = client.post("/predict", files=_upload(images[0], 2), headers=_bearer(TOKEN))
        other = threading.Thread(target=send, args=("other", OTHER, 3))  # another client still gets in
        other.start()
        _in_flight(app, "token 1", 3)
        second = threading.Thread(target=send, args=("second", TOKEN, 1))  # within the share: 4 images
        second.start()
        deadline = time.monotonic() + 10
        while app.state.clients.requests["token 0"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        too_many = client.post("/predict", files=_upload(images[0], 1), headers=_bearer(TOKEN))
        release.set()
        for thread in (first, other, second):
            thread.join(30)
        metrics = client.get("/metrics").text
    assert over_share.status_code == 429 and over_share.headers["Retry-After"] == "1"
    assert "--max-client-queue" in over_share.json()["error"]
    assert too_many.status_code == 429 and "--max-client-requests" in too_many.json()["error"]
    assert too_many.headers["Retry-After"] == "1"
    assert answers == {"first": 200, "other": 200, "second": 200}
    assert dict(app.state.clients.requests) == {} and dict(app.state.clients.images) == {}  # all counted out
    assert 'honed_errors_total{reason="client_limit"} 2.0' in metrics


def test_refused_requests_give_their_slot_back(served, images):
    with _client(served, tokens=(), max_client_requests=1) as client:
        for _ in range(3):  # each refusal (bad body) must leave the one slot free for the next request
            assert client.post("/predict", content=b"not an image", headers={"Content-Type": "image/png"}
                               ).status_code == 415
        assert client.post("/predict", files=_upload(images[0])).status_code == 200
        assert dict(client.app.state.clients.requests) == {}


def test_client_sends_its_token_to_a_real_server(bundle, images, monkeypatch):
    from tests.serve.test_page import serving

    with serving(bundle, tokens=(TOKEN,)) as url:
        monkeypatch.delenv("HONED_SERVE_TOKEN", raising=False)
        with honed.Client(url) as anonymous:
            assert anonymous.health()["status"] == "ok"  # open
            with pytest.raises(HonedError, match=r"needs a bearer token.*token=\.\.\..*HONED_SERVE_TOKEN"):
                anonymous.predict(images[0])
        with honed.Client(url, token=TOKEN) as client:
            assert client.predict(images[0], top_k=1)[0]["top_k"][0]["label"] in ("blue", "red")
            assert client.metadata()["auth"] == "bearer"
        monkeypatch.setenv("HONED_SERVE_TOKEN", TOKEN)
        with honed.Client(url) as from_env:
            assert len(from_env.predict([images[0], images[1]])) == 2


def test_serve_warns_on_every_address_without_a_token(tmp_path, monkeypatch):
    from tests.reliability.cli_app import cli_app

    monkeypatch.delenv("HONED_SERVE_TOKEN", raising=False)
    runner = CliRunner()
    absent = str(tmp_path / "no-bundle")  # the command stops at loading it, after the warning
    open_net = runner.invoke(cli_app(), ["serve", absent, "--host", "0.0.0.0"])
    local = runner.invoke(cli_app(), ["serve", absent])
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    with_token = runner.invoke(cli_app(), ["serve", absent, "--host", "0.0.0.0", "--token-file", str(tmp_path / "tokens")])
    short = runner.invoke(cli_app(), ["serve", absent, "--host", "0.0.0.0"], env={"HONED_SERVE_TOKEN": "abc"})
    for result in (open_net, local, with_token):  # each got as far as loading the (absent) bundle
        assert isinstance(result.exception, HonedError) and "no such bundle" in str(result.exception)
    assert "serving on 0.0.0.0 without a token" in " ".join(open_net.output.split())
    assert "without a token" not in local.output and "without a token" not in with_token.output
    assert isinstance(short.exception, HonedError) and "at least 16" in str(short.exception)


def test_worker_processes_read_the_token_file_the_config_names(bundle, tmp_path, monkeypatch):
    import json

    from honed.serve.app import ENV_CONFIG, app_from_env

    (tmp_path / "tokens").write_text(TOKEN + "\n")
    monkeypatch.delenv("HONED_SERVE_TOKEN", raising=False)
    config = {"bundle": str(bundle), "settings": ServeSettings().to_dict(), "device": "cpu", "backend": "torch",
              "tta": None, "token_file": str(tmp_path / "tokens")}
    monkeypatch.setenv(ENV_CONFIG, json.dumps(config))
    assert TOKEN not in json.dumps(config["settings"])
    with TestClient(app_from_env()) as client:
        assert client.get("/metadata").status_code == 401
        assert client.get("/metadata", headers=_bearer(TOKEN)).status_code == 200
