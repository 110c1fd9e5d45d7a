"""The HTTP routes, driven in-process: answers equal the Predictor's, batching batches, every limit refuses
with the right status and a JSON message, and nothing a client sends crashes the server."""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import honed
from honed.errors import HonedError
from honed.serve import ServeSettings, create_app, load_served


@pytest.fixture(scope="module")
def served(bundle):
    return load_served(bundle, device="cpu")


def _client(served, **settings) -> TestClient:
    return TestClient(create_app(served, ServeSettings(**settings)), raise_server_exceptions=False)


def _uploads(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def _metric(text: str, name: str) -> float:
    """The value of one sample line of the Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def _png(size=(16, 16), color=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- answers


def test_predict_equals_the_predictor_on_the_same_files(served, bundle, images):
    expected = honed.load(bundle, device="cpu").predict_proba([str(p) for p in images], workers=0)
    classes = served.predictor.classes
    with _client(served) as client:
        answer = client.post("/predict", params={"top_k": len(classes)}, files=_uploads(images))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["task"] == "classify" and len(body["predictions"]) == len(images)
    got = np.array([[{e["label"]: e["probability"] for e in p["top_k"]}[c] for c in classes]
                    for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["name"] for p in body["predictions"]] == [p.name for p in images]
    for p in body["predictions"]:  # best first
        probs = [e["probability"] for e in p["top_k"]]
        assert probs == sorted(probs, reverse=True)


def test_json_base64_and_raw_bodies_give_the_same_answer(served, images):
    data = images[0].read_bytes()
    with _client(served) as client:
        multipart = client.post("/predict", files=_uploads(images[:1])).json()["predictions"][0]["top_k"]
        as_json = client.post("/predict", json={"images": [base64.b64encode(data).decode(),
                                                           "data:image/png;base64," + base64.b64encode(data).decode()]})
        raw = client.post("/predict", content=data, headers={"Content-Type": "image/png"})
    assert as_json.status_code == 200 and raw.status_code == 200
    first, second = as_json.json()["predictions"]
    assert first["name"] == "images[0]"
    for answer in (first, second, raw.json()["predictions"][0]):  # batches of 1 and 2: equal to float rounding
        assert [e["label"] for e in answer["top_k"]] == [e["label"] for e in multipart]
        np.testing.assert_allclose([e["probability"] for e in answer["top_k"]],
                                   [e["probability"] for e in multipart], atol=1e-6)


def test_top_k_and_preview(served, images):
    with _client(served) as client:
        one = client.post("/predict?top_k=1", files=_uploads(images[:1])).json()["predictions"][0]
        many = client.post("/predict?top_k=50&preview=true", files=_uploads(images[-2:])).json()["predictions"]
    assert len(one["top_k"]) == 1 and "preprocessed" not in one
    assert all(len(p["top_k"]) == len(served.predictor.classes) for p in many)  # clamped to the classes
    url = many[0]["preprocessed"]
    assert url.startswith("data:image/png;base64,")
    shown = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))
    size = served.predictor.image_size
    assert shown.size == (size, size)
    from honed.data.decode import decode_to_tensor

    expected = decode_to_tensor(str(images[-2]), size, reject_placeholders=False).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(np.asarray(shown.convert("RGB")), expected)  # the model's view, exactly


def test_health_metadata_page_and_metrics(served, bundle, images):
    with _client(served) as client:
        health = client.get("/health").json()
        meta = client.get("/metadata").json()
        page = client.get("/")
        client.post("/predict", files=_uploads(images[:2]))
        client.post("/predict", content=b"hello", headers={"Content-Type": "text/plain"})
        metrics = client.get("/metrics")
    assert health["status"] == "ok" and health["model"] == served.name and health["device"] == "cpu"
    assert meta["classes"] == ["blue", "red"] and meta["task"] == "classify"
    assert meta["preprocessing"]["image_size"] == 16 and meta["preprocessing"]["resize"]
    assert "accuracy" in meta["metrics"] and "classes (2): blue, red" in meta["model_card"]
    assert meta["limits"]["max_batch"] == 32 and meta["tta"] == "none"
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "predict?preview=true" in page.text
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert _metric(text, 'honed_requests_total{method="POST",route="/predict",status="200"}') == 1
    assert _metric(text, 'honed_requests_total{method="POST",route="/predict",status="415"}') == 1
    assert _metric(text, 'honed_errors_total{reason="not_an_image"}') == 1
    assert _metric(text, "honed_batch_size_sum") == 2 and _metric(text, "honed_images_total") == 2
    assert _metric(text, 'honed_request_seconds_count{route="/predict"}') == 2


def test_apps_keep_their_own_metrics(served, images):
    with _client(served) as first, _client(served) as second:
        first.post("/predict", files=_uploads(images[:1]))
        assert _metric(first.get("/metrics").text, "honed_images_total") == 1
        assert _metric(second.get("/metrics").text, "honed_images_total") == 0


def test_regression_bundle_answers_values(tmp_path):
    import pandas as pd

    from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
    from honed.export.bundle import export_bundle
    from tests.conftest import write_image

    rows = []
    for i in range(16):
        level = 20 + 14 * i
        rows.append({"path": str(write_image(tmp_path / "img" / f"{i}.png", (level, level, level), noise_seed=i)),
                     "brightness": level / 255})
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    config = RunConfig(name="reg", workspace=str(tmp_path / "ws"),
                       data=DataConfig(source=str(tmp_path / "data.csv"), task="regress", target_columns=["brightness"],
                                       val_fraction=0.25),
                       model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                       train=TrainConfig(epochs=1, batch_size=8, workers=0))
    bundle = export_bundle(honed.train(config).run_dir, tmp_path / "reg-bundle").path
    served = load_served(bundle, device="cpu")
    paths = [r["path"] for r in rows[:3]]
    expected = served.predictor.predict_outputs(paths, workers=0)[0]
    with _client(served) as client:
        body = client.post("/predict", files=_uploads([Path(p) for p in paths])).json()
    assert body["task"] == "regress"
    got = [p["values"]["brightness"] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected[:, 0], atol=1e-5)


# ---------------------------------------------------------------------------------------------- batching


def test_concurrent_requests_are_predicted_together(served, images, monkeypatch):
    calls = []
    original = served.predictor.predict_batch
    monkeypatch.setattr(served.predictor, "predict_batch", lambda batch: calls.append(len(batch)) or original(batch))
    client = _client(served, max_batch=8, max_wait_ms=300)
    start = threading.Barrier(8)
    answers: list[int] = []

    def one(path: Path) -> None:
        start.wait()
        answers.append(client.post("/predict", files=_uploads([path])).status_code)

    with client:
        threads = [threading.Thread(target=one, args=(images[i % len(images)],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        text = client.get("/metrics").text
    assert answers == [200] * 8
    assert max(calls) > 1 and sum(calls) == 8
    assert _metric(text, "honed_batch_size_count") == len(calls) < 8  # fewer model calls than requests
    assert _metric(text, 'honed_batch_size_bucket{le="1.0"}') < len(calls) or len(calls) == 1


def test_batching_off_predicts_one_at_a_time(served, images):
    with _client(served, max_batch=1, max_wait_ms=50) as client:
        client.post("/predict", files=_uploads(images[:5]))
        text = client.get("/metrics").text
    assert _metric(text, "honed_batch_size_count") == 5 and _metric(text, "honed_batch_size_sum") == 5


# ---------------------------------------------------------------------------------------------- limits


def test_body_too_large_is_413(served):
    big = _png((600, 600)) + b"\x00" * 200_000
    with _client(served, max_body_mb=0.1) as client:
        answer = client.post("/predict", files=[("files", ("big.png", big, "image/png"))])
        chunked = client.post("/predict", content=iter([b"x" * 60_000, b"x" * 60_000]),
                              headers={"Content-Type": "image/png"})
    assert answer.status_code == 413 and "--max-body-mb" in answer.json()["error"]
    assert chunked.status_code == 413  # no Content-Length: counted while reading


def test_too_many_images_in_one_request_is_413(served):
    with _client(served, max_images=3) as client:
        answer = client.post("/predict", files=[("files", (f"{i}.png", _png(), "image/png")) for i in range(5)])
        as_json = client.post("/predict", json={"images": [base64.b64encode(_png()).decode()] * 4})
    assert answer.status_code == 413 and "--max-images" in answer.json()["error"]
    assert as_json.status_code == 413


@pytest.mark.parametrize("data, status, reason", [
    (b"<html><body>hi</body></html>", 415, "looks like HTML"),
    (b"just some words", 415, "looks like text"),
    (b"", 415, "zero bytes"),
    (_png()[:60], 422, "cannot be decoded"),
])
def test_bad_images_are_refused_naming_the_part(served, data, status, reason):
    with _client(served) as client:
        answer = client.post("/predict", files=[("files", ("good.png", _png(), "image/png")),
                                                ("files", ("bad.jpg", data, "image/jpeg"))])
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["part"] == "bad.jpg" and reason in body["error"] and "bad.jpg" in body["error"]


def test_too_many_pixels_is_422_before_decoding(served):
    with _client(served, max_pixels=10_000) as client:
        answer = client.post("/predict", files=[("files", ("huge.png", _png((200, 100)), "image/png"))])
        small = client.post("/predict", files=[("files", ("small.png", _png((90, 100)), "image/png"))])
    assert answer.status_code == 422 and "too many pixels" in answer.json()["error"]
    assert answer.json()["part"] == "huge.png" and small.status_code == 200


@pytest.mark.parametrize("kwargs, status, text", [
    (dict(content=b"{not json", headers={"Content-Type": "application/json"}), 400, "not valid JSON"),
    (dict(json={"pictures": []}), 422, "images"),
    (dict(json={"images": ["%%%"]}), 422, "images[0]: not valid base64"),
    (dict(json={"images": [3]}), 422, "must be a base64 string"),
    (dict(json={"images": []}), 422, "no images"),
    (dict(content=b"x", headers={"Content-Type": "text/plain"}), 415, "unsupported Content-Type"),
    (dict(content=b"--b\r\nbroken", headers={"Content-Type": "multipart/form-data"}), 400, "malformed multipart"),
    (dict(files={"note": (None, b"a field, not a file")}), 422, "no images"),
])
def test_malformed_requests_get_json_errors(served, kwargs, status, text):
    with _client(served) as client:
        answer = client.post("/predict", **kwargs)
    assert answer.status_code == status, answer.text
    assert text in answer.json()["error"]


def test_bad_query_and_unknown_routes_are_json_4xx(served):
    with _client(served) as client:
        bad_k = client.post("/predict?top_k=0", content=_png(), headers={"Content-Type": "image/png"})
        nowhere = client.get("/nowhere")
        wrong_method = client.get("/predict")
    assert bad_k.status_code == 422 and bad_k.json()["part"] == "top_k"
    assert nowhere.status_code == 404 and "error" in nowhere.json()
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def _slow(served, monkeypatch, seconds: float) -> None:
    original = served.predictor.predict_batch

    def slow(batch):
        time.sleep(seconds)
        return original(batch)

    monkeypatch.setattr(served.predictor, "predict_batch", slow)


def test_queue_full_is_429_with_retry_after(served, monkeypatch):
    _slow(served, monkeypatch, 0.5)
    client = _client(served, max_batch=1, max_wait_ms=0, max_queue=2, max_images=2)
    answers: list = []

    def one() -> None:
        answers.append(client.post("/predict", content=_png(), headers={"Content-Type": "image/png"}))

    with client:
        threads = [threading.Thread(target=one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        health = client.get("/health")
    statuses = sorted(a.status_code for a in answers)
    assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429}, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "queue is full" in refused.json()["error"]
    assert health.json()["status"] == "ok"


def test_too_slow_is_504_and_the_server_goes_on(served, monkeypatch):
    _slow(served, monkeypatch, 0.6)
    with _client(served, timeout_s=0.2) as client:
        answer = client.post("/predict", content=_png(), headers={"Content-Type": "image/png"})
        assert answer.status_code == 504 and "--timeout-s" in answer.json()["error"]
        monkeypatch.undo()
        time.sleep(0.6)  # the model thread finishes the abandoned batch
        assert client.post("/predict", content=_png(), headers={"Content-Type": "image/png"}).status_code == 200
        assert 'reason="timeout"' in client.get("/metrics").text


def test_model_failure_is_a_json_500_and_the_model_thread_survives(served, monkeypatch):
    original = served.predictor.predict_batch
    monkeypatch.setattr(served.predictor, "predict_batch", lambda batch: 1 / 0)
    with _client(served) as client:
        failed = client.post("/predict", content=_png(), headers={"Content-Type": "image/png"})
        monkeypatch.setattr(served.predictor, "predict_batch", original)
        ok = client.post("/predict", content=_png(), headers={"Content-Type": "image/png"})
    assert failed.status_code == 500 and "prediction failed" in failed.json()["error"]
    assert ok.status_code == 200


# ---------------------------------------------------------------------------------------------- loading


def test_urls_run_folders_and_bad_settings_are_refused(bundle, tmp_path):
    with pytest.raises(HonedError, match="is a URL"):
        load_served("https://example.com/model.zip")
    with pytest.raises(HonedError, match="no such bundle"):
        load_served(tmp_path / "missing")
    (tmp_path / "folder").mkdir()
    with pytest.raises(HonedError, match="not a bundle"):
        load_served(tmp_path / "folder")
    with pytest.raises(HonedError, match="--max-queue"):
        ServeSettings(max_queue=4, max_images=8)
    with pytest.raises(HonedError, match="--max-batch"):
        ServeSettings(max_batch=0)


def test_a_zipped_bundle_serves_with_its_card(bundle, tmp_path):
    import shutil

    archive = Path(shutil.make_archive(str(tmp_path / "b"), "zip", bundle))
    served = load_served(archive, device="cpu")
    assert "## Steps" in served.card and served.metadata()["classes"] == ["blue", "red"]


def test_worker_processes_build_the_same_app_from_the_environment(bundle, monkeypatch):
    import json

    from honed.serve.app import ENV_CONFIG, app_from_env

    settings = ServeSettings(max_batch=4, max_images=2, max_queue=8)
    monkeypatch.setenv(ENV_CONFIG, json.dumps({"bundle": str(bundle), "settings": settings.to_dict(),
                                               "device": "cpu", "backend": "torch", "tta": "flip"}))
    with TestClient(app_from_env()) as client:
        meta = client.get("/metadata").json()
        answer = client.post("/predict", content=_png(), headers={"Content-Type": "image/png"})
    assert meta["limits"]["max_batch"] == 4 and meta["tta"]["views"] == ["identity", "hflip"]
    assert answer.status_code == 200


def test_tta_setting_is_applied_as_the_predictor_applies_it(bundle, images):
    expected = honed.load(bundle, device="cpu", tta="flip").predict_proba([str(p) for p in images], workers=0)
    plain = honed.load(bundle, device="cpu").predict_proba([str(p) for p in images], workers=0)
    assert np.abs(expected - plain).max() > 1e-4  # flipping changes these outputs, so the check can fail
    served = load_served(bundle, device="cpu", tta="flip")
    with _client(served) as client:
        body = client.post("/predict", params={"top_k": 2}, files=_uploads(images)).json()
    got = np.array([[{e["label"]: e["probability"] for e in p["top_k"]}[c] for c in served.predictor.classes]
                    for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
