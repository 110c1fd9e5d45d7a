"""gbm probe runs predict, export (bundle and ONNX) and ensemble without pickling: the fitted trees are stored as
an ONNX graph, never their training data, and loading refits nothing."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

import honed
from honed.errors import HonedError
from honed.export.bundle import export_bundle
from honed.artifacts.bundle_files import BUNDLE_FILE
from honed.training.fit import train
from honed.models.heads.gbm import HEAD_FILE, OLD_FEATURES_FILE
from honed.artifacts.run_folder import PROBE_FILE
from tests.training.test_train import tiny_config

PROBS = ["p:blue", "p:red"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def colors(color_folder):
    """color_folder grown to 40 images a class: scikit-learn's trees need 20 training rows a leaf to split."""
    from tests.conftest import write_image

    for i in range(12, 40):
        write_image(color_folder / "red" / f"{i}.png", (140 + 2 * i, 40, 60), noise_seed=i)
        write_image(color_folder / "blue" / f"{i}.png", (60, 40, 140 + 2 * i), noise_seed=100 + i)
    return color_folder


@pytest.fixture
def no_pickle(monkeypatch):
    """Any unpickling while this is active fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


def _gbm_run(source, workspace, name="gbm", head_model="gbm"):
    config = tiny_config(source, workspace, epochs=1)
    config.name = name
    config.model.strategy, config.model.head_model = "probe", head_model
    return train(config).run_dir


def _saved(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "predictions_val.parquet")


def test_gbm_probe_run_reloads_to_its_saved_probabilities(colors, tmp_path, no_pickle):
    run = _gbm_run(colors, tmp_path / "ws")
    for name in ("best.safetensors", "last.safetensors", HEAD_FILE, "predictions_val.parquet"):
        assert (run / name).is_file(), name
    assert not (run / OLD_FEATURES_FILE).exists()
    facts = json.loads((run / PROBE_FILE).read_text())
    assert facts["head"] == "gbm-onnx" and facts["weights_written"] is True
    assert facts["details"]["onnx_parity_max_abs_diff"] <= 1e-5
    saved = _saved(run)
    expected = saved[PROBS].to_numpy()
    assert len(np.unique(np.round(expected[:, 0], 6))) > 1 and expected.max() > 0.9  # the trees really split
    probs = honed.load(run, calibrate=False).predict_proba(saved["path"].tolist(), workers=0)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-6)
    table = honed.load(run, calibrate=False).predict(saved["path"].tolist()[:3], workers=0)
    assert list(table["prediction"]) == [PROBS[i][2:] for i in expected[:3].argmax(axis=1)]


def test_gbm_probe_bundle_predicts_the_same_and_refuses_tampering(colors, tmp_path, no_pickle):
    run = _gbm_run(colors, tmp_path / "ws")
    saved = _saved(run)
    report = export_bundle(run, tmp_path / "bundle")
    assert HEAD_FILE in report.files and OLD_FEATURES_FILE not in report.files
    meta = json.loads((report.path / BUNDLE_FILE).read_text())
    assert len(meta["files"][HEAD_FILE]["sha256"]) == 64
    bundled = honed.load(report.path, calibrate=False).predict_proba(saved["path"].tolist(), workers=0)
    np.testing.assert_allclose(bundled, saved[PROBS].to_numpy(), rtol=0, atol=1e-6)
    zipped = export_bundle(run, tmp_path / "zipped", archive=True)
    np.testing.assert_allclose(honed.load(zipped.path, calibrate=False).predict_proba(saved["path"].tolist()[:4], workers=0),
                               saved[PROBS].to_numpy()[:4], rtol=0, atol=1e-6)

    with pytest.raises(HonedError, match="model.onnx"):  # a plain bundle has no graph for ONNX Runtime
        honed.load(report.path, backend="onnx")
    with pytest.raises(HonedError, match="TorchScript cannot hold its trees"):
        export_bundle(run, tmp_path / "bundle-ts", formats=["bundle", "torchscript"])
    assert not (tmp_path / "bundle-ts").exists()

    data = bytearray((report.path / HEAD_FILE).read_bytes())
    data[-1] ^= 0xFF  # one changed byte in the stored graph
    (report.path / HEAD_FILE).write_bytes(bytes(data))
    with pytest.raises(HonedError, match="SHA-256"):
        honed.load(report.path)


def test_gbm_probe_exports_one_onnx_graph_that_predicts_as_the_run(colors, tmp_path, no_pickle):
    run = _gbm_run(colors, tmp_path / "ws")
    saved = _saved(run)
    report = export_bundle(run, tmp_path / "bundle", formats=["bundle", "onnx"])
    assert "model.onnx" in report.files and report.parity["onnx"].passed
    onnx_probs = honed.load(report.path, backend="onnx").predict_proba(saved["path"].tolist(), workers=0)
    np.testing.assert_allclose(onnx_probs, saved[PROBS].to_numpy(), rtol=0, atol=1e-4)


def test_old_gbm_run_and_bundle_with_training_features_are_refused(colors, tmp_path):
    run = _gbm_run(colors, tmp_path / "ws")
    bundle = export_bundle(run, tmp_path / "bundle").path
    (run / HEAD_FILE).unlink()  # as an older honed left it: the training data, refitted at every load
    save_file({"train_features": np.zeros((4, 8), np.float32)}, str(run / OLD_FEATURES_FILE))
    for action in (lambda: honed.load(run), lambda: export_bundle(run, tmp_path / "again")):
        with pytest.raises(HonedError, match=r"older honed.*training features.*train the gbm probe again"):
            action()
    meta = json.loads((bundle / BUNDLE_FILE).read_text())
    meta["files"][OLD_FEATURES_FILE] = meta["files"].pop(HEAD_FILE)
    (bundle / BUNDLE_FILE).write_text(json.dumps(meta))
    with pytest.raises(HonedError, match=r"older honed.*train the gbm probe again"):
        honed.load(bundle)


def test_regression_gbm_probe_reloads_to_its_saved_values(tmp_path, no_pickle):
    from tests.conftest import write_image

    rows = []
    for i in range(80):
        write_image(tmp_path / "img" / f"{i}.png", (i * 3,) * 3, noise_seed=i)
        rows.append({"path": f"img/{i}.png", "brightness": i * 3 / 255})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    config = tiny_config(tmp_path / "m.csv", tmp_path / "ws", epochs=1)
    config.model.strategy, config.model.head_model = "probe", "gbm"
    config.data.task, config.data.target_columns = "regress", ["brightness"]
    run = train(config).run_dir
    saved = _saved(run)
    values = honed.load(run).predict_outputs(saved["path"].tolist(), workers=0)[0]
    np.testing.assert_allclose(values[:, 0], saved["prediction:brightness"].to_numpy(), rtol=0, atol=1e-6)
    assert np.ptp(values) > 0  # not a constant
    bundle = export_bundle(run, tmp_path / "bundle").path
    np.testing.assert_allclose(honed.load(bundle).predict_outputs(saved["path"].tolist(), workers=0)[0], values,
                               rtol=0, atol=1e-6)


def test_gbm_probe_joins_an_ensemble_and_its_bundle(colors, tmp_path, no_pickle):
    from honed.ensemble import create_ensemble

    ws = tmp_path / "ws"
    gbm, linear = _gbm_run(colors, ws, "gbm"), _gbm_run(colors, ws, "lin", head_model="logreg")
    result = create_ensemble(["gbm", "lin"], name="mix", method="soft", workspace=ws)
    paths = _saved(gbm)["path"].tolist()
    members = [_saved(run).set_index("path").loc[paths, PROBS].to_numpy() for run in (gbm, linear)]
    expected = (members[0] + members[1]) / 2
    np.testing.assert_allclose(honed.load(result.run_dir, calibrate=False).predict_proba(paths, workers=0), expected, atol=1e-5)
    bundle = export_bundle(result.run_dir, tmp_path / "mix-bundle").path
    assert (bundle / "members" / "00" / HEAD_FILE).is_file()
    np.testing.assert_allclose(honed.load(bundle, calibrate=False).predict_proba(paths, workers=0), expected, atol=1e-5)


def test_no_gbm_file_nor_bundle_carries_training_features_or_targets(colors, tmp_path):
    """Every file of the run, its bundle and its ONNX bundle is scanned for every feature row the probe
    extracted (train and val, as cached float32 rows) and for the training targets in the usual dtypes."""
    run = _gbm_run(colors, tmp_path / "ws")
    cached = sorted((tmp_path / "cache").rglob("*.npy"))
    rows = [row for path in cached for row in np.load(path)]
    assert len(cached) == 2 and len(rows) >= 60 and rows[0].dtype == np.float32 and rows[0].size >= 8
    paths = pd.read_parquet(run / "manifest.parquet")
    labels = paths.loc[paths["split"] == "train", "label"]
    targets = labels.map({name: i for i, name in enumerate(sorted(set(labels)))}).to_numpy()
    # targets as integers (how they were stored): sorted 0/1 runs as float32 also match a network's zero
    # biases followed by BatchNorm's unit scales, so float forms would find weights, not data
    needles = [row.tobytes() for row in rows] + [targets.astype(t).tobytes() for t in (np.int64, np.int32)]
    bundle = export_bundle(run, tmp_path / "bundle", formats=["bundle", "onnx"]).path
    files = [p for folder in (bundle,) for p in folder.rglob("*") if p.is_file()]
    files += [run / HEAD_FILE]
    assert {p.name for p in files} >= {HEAD_FILE, "model.onnx", "model.safetensors", "bundle.json"}
    for path in files:
        data = path.read_bytes()
        found = [i for i, needle in enumerate(needles) if needle in data]
        assert not found, f"{path.name} holds training data (needles {found[:5]})"
    assert b"train_features" not in (run / HEAD_FILE).read_bytes()
    # the scan can fail: the old format's file holds the rows it looks for
    save_file({"train_features": np.stack(rows[:3])}, str(tmp_path / "old.safetensors"))
    assert needles[0] in (tmp_path / "old.safetensors").read_bytes()


def test_old_gbm_run_without_features_is_refused(colors, tmp_path):
    run = _gbm_run(colors, tmp_path / "ws")
    (run / HEAD_FILE).unlink()  # as written before gbm heads were refitted
    (run / "best.safetensors").unlink()
    facts = json.loads((run / PROBE_FILE).read_text())
    (run / PROBE_FILE).write_text(json.dumps({**facts, "weights_written": False, "note": "no weights"}))
    with pytest.raises(HonedError, match="train it again"):
        honed.load(run)
    with pytest.raises(HonedError, match="train it again"):
        export_bundle(run, tmp_path / "bundle")


def test_gbm_code_never_pickles():
    root = Path(honed.__file__).parent
    for name in ("models/heads/gbm.py", "models/heads/sklearn.py", "training/probe.py", "models/features.py",
                 "export/bundle.py", "artifacts/bundle_files.py", "artifacts/bundle_meta.py", "predict/predictor.py"):
        text = (root / name).read_text()
        assert not re.search(r"(import|from) (pickle|joblib|cloudpickle)|pickle\.|joblib\.|torch\.load\(", text), name
