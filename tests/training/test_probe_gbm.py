"""gbm probe runs predict, export and ensemble without pickling: the trees are refitted from stored features."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

import honed
from honed.errors import HonedError
from honed.export.bundle import export_bundle
from honed.artifacts.bundle_files import BUNDLE_FILE
from honed.training.fit import train
from honed.models.heads.gbm import FEATURES_FILE
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
    for name in ("best.safetensors", "last.safetensors", FEATURES_FILE, "predictions_val.parquet"):
        assert (run / name).is_file(), name
    facts = json.loads((run / PROBE_FILE).read_text())
    assert facts["head"] == "gbm-refit" and facts["weights_written"] is True
    stored = load_file(str(run / FEATURES_FILE))
    assert stored["train_features"].dtype == np.float32 and stored["train_features"].shape[0] == len(
        stored["train_targets"])
    saved = _saved(run)
    expected = saved[PROBS].to_numpy()
    assert len(np.unique(np.round(expected[:, 0], 6))) > 1 and expected.max() > 0.9  # the trees really split
    probs = honed.load(run).predict_proba(saved["path"].tolist(), workers=0)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-6)
    table = honed.load(run).predict(saved["path"].tolist()[:3], workers=0)
    assert list(table["prediction"]) == [PROBS[i][2:] for i in expected[:3].argmax(axis=1)]


def test_gbm_probe_bundle_predicts_the_same_and_refuses_tampering(colors, tmp_path, no_pickle):
    run = _gbm_run(colors, tmp_path / "ws")
    saved = _saved(run)
    report = export_bundle(run, tmp_path / "bundle")
    assert FEATURES_FILE in report.files
    meta = json.loads((report.path / BUNDLE_FILE).read_text())
    assert len(meta["files"][FEATURES_FILE]["sha256"]) == 64
    bundled = honed.load(report.path).predict_proba(saved["path"].tolist(), workers=0)
    np.testing.assert_allclose(bundled, saved[PROBS].to_numpy(), rtol=0, atol=1e-6)
    zipped = export_bundle(run, tmp_path / "zipped", archive=True)
    np.testing.assert_allclose(honed.load(zipped.path).predict_proba(saved["path"].tolist()[:4], workers=0),
                               saved[PROBS].to_numpy()[:4], rtol=0, atol=1e-6)

    with pytest.raises(HonedError, match="onnx"):
        honed.load(report.path, backend="onnx")
    for fmt in ("onnx", "torchscript"):
        with pytest.raises(HonedError, match="gbm probe"):
            export_bundle(run, tmp_path / f"bundle-{fmt}", formats=["bundle", fmt])
        assert not (tmp_path / f"bundle-{fmt}").exists()

    data = bytearray((report.path / FEATURES_FILE).read_bytes())
    data[-1] ^= 0xFF  # one changed byte in the last stored value
    (report.path / FEATURES_FILE).write_bytes(bytes(data))
    with pytest.raises(HonedError, match="SHA-256"):
        honed.load(report.path)


def test_refit_that_does_not_reproduce_the_run_is_refused(colors, tmp_path):
    run = _gbm_run(colors, tmp_path / "ws")
    path = run / FEATURES_FILE
    from safetensors import safe_open

    with safe_open(str(path), "np") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    tensors["val_outputs"] = tensors["val_outputs"][:, ::-1].copy()  # as if other trees had been grown
    save_file(tensors, str(path), metadata={**metadata, "sklearn": "0.0.1"})
    with pytest.raises(HonedError, match=r"scikit-learn 0\.0\.1.*this is scikit-learn"):
        honed.load(run)


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
    np.testing.assert_allclose(honed.load(result.run_dir).predict_proba(paths, workers=0), expected, atol=1e-5)
    bundle = export_bundle(result.run_dir, tmp_path / "mix-bundle").path
    assert (bundle / "members" / "00" / FEATURES_FILE).is_file()
    np.testing.assert_allclose(honed.load(bundle).predict_proba(paths, workers=0), expected, atol=1e-5)


def test_old_gbm_run_without_features_is_refused(colors, tmp_path):
    run = _gbm_run(colors, tmp_path / "ws")
    (run / FEATURES_FILE).unlink()  # as written before gbm heads were refitted
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
