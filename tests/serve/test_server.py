"""`honed serve` as a real uvicorn process on a loopback port, used through honed.Client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import honed
from honed.errors import HonedError
from honed.serve.process import SOURCE_ROOT as REPO, free_port, running_server


@pytest.mark.slow  # a fresh `python -m honed` process: 20-60 s to import on the shared 2-core box
def test_honed_serve_answers_the_client_like_the_predictor(bundle, images, tmp_path):
    expected = honed.load(bundle, device="cpu").predict_proba([str(p) for p in images], workers=0)
    with running_server(bundle, "--max-batch", "8", log=tmp_path / "server.log", threads=1) as (url, _):
        with honed.Client(url) as client:
            health = client.health()
            meta = client.metadata()
            from_paths = client.predict(images, top_k=2)
            from_bytes = client.predict(images[0].read_bytes(), top_k=1)
            with pytest.raises(HonedError, match=r"refused POST /predict \(415\).*image0"):
                client.predict(b"plain text, not an image")
        curl = _documented_curl(url, images[0]) if shutil.which("curl") else None
    assert health["status"] == "ok" and meta["classes"] == ["blue", "red"]
    got = np.array([[{e["label"]: e["probability"] for e in p["top_k"]}[c] for c in meta["classes"]]
                    for p in from_paths])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert from_bytes[0]["top_k"] == from_paths[0]["top_k"][:1]
    if curl is not None:  # the multipart curl line of docs/serving.md, run as written
        assert [e["label"] for e in curl["predictions"][0]["top_k"]] == [e["label"] for e in from_paths[0]["top_k"]]


def _documented_curl(url: str, image) -> dict:
    doc = (REPO / "docs" / "serving.md").read_text()
    line = next(l for l in doc.splitlines() if l.startswith('curl -s -F "files=@cat.jpg"'))
    command = line.replace("http://127.0.0.1:8000", url).replace("cat.jpg", str(image))
    command = command.replace(' -F "files=@dog.png"', "")
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_client_explains_an_unreachable_server():
    with honed.Client(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(HonedError, match="cannot reach .*honed serve"):
            client.health()


@pytest.mark.slow  # a fresh `python -m honed` process: 20-60 s to import on the shared 2-core box
def test_serve_refuses_a_url_in_one_line():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "honed", "serve", "https://example.com/b.zip"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 2 and "is a URL" in done.stderr and "only loads local bundles" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a fresh `python -m honed` process
def test_honed_serve_with_a_token_file_refuses_clients_without_it(bundle, images, tmp_path):
    token = "process-token-0123456789abcdef"
    (tmp_path / "tokens").write_text(f"# the team\n{token}\n")
    with running_server(bundle, "--token-file", str(tmp_path / "tokens"), log=tmp_path / "server.log",
                        threads=1) as (url, _):
        with honed.Client(url, token="") as anonymous:  # "" sends no token, whatever the environment says
            assert anonymous.health()["status"] == "ok"
            with pytest.raises(HonedError, match="needs a bearer token"):
                anonymous.predict(images[0])
        with honed.Client(url, token=token) as client:
            assert len(client.predict(images[:2], top_k=1)) == 2
    assert token not in (tmp_path / "server.log").read_text()
