"""The probe strategy: features once, a scikit-learn head written into the last layer, a normal run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import honed
from honed.errors import HonedError
from honed.tracking.ledger import Ledger
from honed.training.fit import train
from honed.models.features import extract_features, last_linear
from honed.artifacts.run_folder import PROBE_FILE
from honed.training.probe import fit_head
from tests.training.test_train import tiny_config


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "cache"))


def _probe_config(source, workspace, head_model=""):
    config = tiny_config(source, workspace, epochs=1)
    config.model.strategy, config.model.head_model = "probe", head_model
    return config


@pytest.mark.parametrize("head_model", ["logreg", "svm"])
def test_probe_run_is_a_normal_run_that_reloads_to_its_predictions(color_folder, tmp_path, head_model):
    from honed.models.factory import build_model

    config = _probe_config(color_folder, tmp_path / "ws", head_model)
    torch.manual_seed(config.train.seed)
    before = build_model(honed.RunConfig.from_dict(config.to_dict()).model, 2).state_dict()
    result = train(config)
    run = result.run_dir
    assert result.metrics["accuracy"] >= 0.9
    for name in ("config.yaml", "labels.json", "metrics.csv", "best.safetensors", "predictions_val.parquet",
                 "manifest.parquet", PROBE_FILE):
        assert (run / name).is_file(), name
    with Ledger(tmp_path / "ws") as ledger:
        assert ledger.get("tiny").status == "done"
    after = load_file(str(run / "best.safetensors"))
    assert {k for k in after if not torch.equal(before[k], after[k])} == {"fc.weight", "fc.bias"}
    saved = pd.read_parquet(run / "predictions_val.parquet")
    probs = honed.load(run).predict_proba(saved["path"].tolist(), workers=0)
    np.testing.assert_allclose(probs, saved[["p:blue", "p:red"]].to_numpy(), atol=1e-5)
    assert json.loads((run / PROBE_FILE).read_text())["head_model"] == head_model


def test_logistic_head_is_exactly_scikit_learns(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 12)) * rng.uniform(0.1, 5, 12) + rng.normal(size=12)
    for classes, outputs in ((3, 3), (2, 2), (2, 4)):  # multinomial, binary, classes absent from training
        y = rng.integers(0, classes, 90)
        head = fit_head("logreg", x, y, task="classify", outputs=outputs)
        reference = make_pipeline(StandardScaler(), LogisticRegression(C=head.details["C"], max_iter=2000)).fit(x, y)
        got = head.predict(x)
        np.testing.assert_allclose(got[:, :classes], reference.predict_proba(x), atol=1e-4)
        assert np.allclose(got.sum(axis=1), 1.0) and (got[:, classes:] < 1e-9).all()


def test_svm_probabilities_are_calibrated_by_one_temperature():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    x = rng.normal(size=(150, 8)) + 1.5 * np.eye(3, 8)[y]  # overlapping classes: not separable
    head = fit_head("svm", x, y, task="classify", outputs=3)
    assert 0.05 < head.details["temperature"] < 100
    probs = head.predict(x)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    assert abs(confidence.mean() - correct.mean()) < 0.1  # calibrated: as confident as it is right


def test_regression_probe_predicts_brightness(tmp_path):
    from tests.conftest import write_image

    rows = []
    for i in range(40):
        write_image(tmp_path / "img" / f"{i}.png", (i * 6,) * 3, noise_seed=i)
        rows.append({"path": f"img/{i}.png", "brightness": i * 6 / 255})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    config = _probe_config(tmp_path / "m.csv", tmp_path / "ws")
    config.data.task, config.data.target_columns = "regress", ["brightness"]
    result = train(config)
    spread = np.abs(np.array([r["brightness"] for r in rows]) - 0.46).mean()
    assert result.metrics["mae"] < spread
    assert "brightness" in honed.load(result.run_dir).predict([str(tmp_path / "img" / "0.png")], workers=0).columns
    bad = _probe_config(tmp_path / "m.csv", tmp_path / "ws2", "logreg")
    bad.data.task, bad.data.target_columns = "regress", ["brightness"]
    with pytest.raises(HonedError, match="ridge, svr, gbm"):
        train(bad)


def test_probe_run_exports_as_a_bundle(color_folder, tmp_path):
    from honed.export.bundle import export_bundle

    result = train(_probe_config(color_folder, tmp_path / "ws"))
    report = export_bundle(result.run_dir, tmp_path / "bundle")
    saved = pd.read_parquet(result.run_dir / "predictions_val.parquet")
    bundled = honed.load(report.path).predict_proba(saved["path"].tolist()[:4], workers=0)
    np.testing.assert_allclose(bundled, saved[["p:blue", "p:red"]].to_numpy()[:4], atol=1e-5)


def test_features_are_cached_by_weights_and_files(color_folder, tmp_path):
    import timm

    from honed.data.dataset import ImageDataset

    paths = sorted(str(p) for p in color_folder.rglob("*.png"))
    frame = pd.DataFrame({"path": paths})
    dataset = ImageDataset(frame, np.zeros(len(paths), dtype=np.int64), 16)
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=2)
    args = dict(mean=[0.5] * 3, std=[0.5] * 3, cache_dir=tmp_path / "c")
    first = extract_features(model, dataset, **args)
    assert first.shape == (len(paths), last_linear(model).in_features)
    assert len(list((tmp_path / "c" / "features").glob("*.npy"))) == 1
    np.testing.assert_array_equal(extract_features(model, dataset, **args), first)
    with torch.no_grad():
        last_linear(model).weight.add_(1)  # the head does not make the features: the same cache entry
    extract_features(model, dataset, **args)
    assert len(list((tmp_path / "c" / "features").glob("*.npy"))) == 1
    with torch.no_grad():
        next(model.parameters()).mul_(2)  # other weights: another cache entry, other features
    assert not np.array_equal(extract_features(model, dataset, **args), first)
    assert len(list((tmp_path / "c" / "features").glob("*.npy"))) == 2


def test_probe_refuses_data_parallel(color_folder, tmp_path):
    from honed.training.probe import train_probe
    from honed.runtime import Runtime

    with pytest.raises(HonedError, match="without torchrun"):
        train_probe(_probe_config(color_folder, tmp_path), torch.nn.Linear(1, 1), None, run_dir=tmp_path,
                    runtime=Runtime(torch.device("cpu"), None, rank=0, world_size=2), reporter=None)
