"""Bundles: a run packed as a folder or zip predicts exactly as the run does, carries its parity evidence and
model card, and loading one refuses anything tampered with and never executes what it holds."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import honed
from honed.errors import HonedError
from honed.export import run_bundle as bundle_module
from honed.export.bundle import export_bundle
from honed.artifacts.bundle_files import BUNDLE_FILE
from honed.artifacts.bundle_meta import WEIGHTS_FILE
from honed.artifacts.trained import is_bundle
from honed.predict import load as load_bundle
from honed.artifacts.bundle_files import sha256
from honed.export.fuse import FusionResult, fuse_batchnorm
from honed.tracking.atomic import is_temp_name
from honed.training.fit import train
from tests.conftest import write_color_folder
from tests.training.test_train import tiny_config


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One tiny trained run (two colours, an augmentation policy) shared by the module's tests."""
    root = write_color_folder(tmp_path_factory.mktemp("data") / "colors")
    torch.set_num_threads(1)
    return train(tiny_config(root, tmp_path_factory.mktemp("ws"), augment="hflip")).run_dir


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory) -> Path:
    """The run exported with ONNX and TorchScript files (BatchNorm fused)."""
    torch.set_num_threads(1)
    report = export_bundle(run_dir, tmp_path_factory.mktemp("out") / "tiny-bundle", formats=["onnx", "torchscript"])
    assert report.passed
    return report.path


def _images(run_dir: Path) -> list[str]:
    """Every image of the run's data folder (train and validation)."""
    root = Path(pd.read_parquet(run_dir / "manifest.parquet")["path"][0]).parents[1]
    return sorted(str(p) for p in root.rglob("*.png"))


def _meta(path: Path) -> dict:
    return json.loads((path / BUNDLE_FILE).read_text())


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def honed_cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "honed", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


# ---------------------------------------------------------------------------------------------- round trips


def test_bundle_predicts_exactly_as_the_run(run_dir, bundle):
    images = _images(run_dir)
    from_run = honed.load(run_dir).predict(images, top_k=2, workers=0)
    from_bundle = honed.load(bundle).predict(images, top_k=2, workers=0)
    pd.testing.assert_frame_equal(from_run, from_bundle)
    assert (from_bundle["prediction"] == [Path(p).parent.name for p in images]).mean() >= 0.9


def test_onnx_backend_agrees_with_the_run(run_dir, bundle):
    images = _images(run_dir)
    torch_probs = honed.load(run_dir).predict_proba(images, workers=0)
    onnx_probs = load_bundle(bundle, backend="onnx").predict_proba(images, workers=0)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-5)


def test_zip_archive_round_trip(run_dir, tmp_path):
    report = export_bundle(run_dir, tmp_path / "shipped", archive=True)
    assert report.path == tmp_path / "shipped.zip" and report.path.is_file() and is_bundle(report.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped.zip"]  # no folder, no temp files left
    images = _images(run_dir)[:6]
    expected = honed.load(run_dir).predict_proba(images, workers=0)
    np.testing.assert_array_equal(honed.load(report.path).predict_proba(images, workers=0), expected)


def test_bundle_folder_zipped_by_hand_loads(run_dir, bundle, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "by-hand"), "zip", root_dir=bundle.parent, base_dir=bundle.name)
    images = _images(run_dir)[:6]
    np.testing.assert_array_equal(honed.load(archive).predict_proba(images, workers=0),
                                  honed.load(run_dir).predict_proba(images, workers=0))


# ---------------------------------------------------------------------------------------------- contents


def test_bundle_holds_exports_with_passed_parity(bundle):
    names = {p.name for p in bundle.iterdir()}
    assert names == {"bundle.json", "model.safetensors", "model_card.md", "model.onnx", "model.torchscript.pt"}
    meta = _meta(bundle)
    assert meta["format_version"] == 1 and meta["model"]["name"] == "test_resnet" and meta["task"] == "classify"
    assert meta["classes"] == ["blue", "red"] and meta["tta"] == "none" and meta["data_fingerprint"]
    assert meta["preprocessing"] == {"image_size": 16, "resize": "shorter side + centre crop",
                                     "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}
    parity = meta["parity"]
    assert parity["inputs"] == "6 validation images" and parity["fused"] and parity["fused_pairs"] > 0
    assert set(parity["checks"]) == {"fusion", "onnx", "torchscript"}
    assert all(check["passed"] and check["top1_agreement"] == 1.0 for check in parity["checks"].values())
    assert meta["metrics"]["accuracy"] == meta["score"]


def test_model_card_names_data_classes_steps_and_metric(bundle):
    card = (bundle / "model_card.md").read_text()
    for expected in ("classes (2): blue, red", "| train | 9 | 9 | 18 |", "hflip", "## Steps", "| `tiny` | baseline",
                     "Main metric: accuracy = ", "| onnx | yes |", "Skipped files: none"):
        assert expected in card, expected


def test_model_card_steps_follow_the_parent_chain(run_dir, tmp_path):
    child = tiny_config(Path(pd.read_parquet(run_dir / "manifest.parquet")["path"][0]).parents[1],
                        run_dir.parent, epochs=1, lr=1e-3)
    child.name, child.parent, child.change = "tiny-lr", "tiny", "lr 3e-3 -> 1e-3"
    card = (export_bundle(train(child).run_dir, tmp_path / "child").path / "model_card.md").read_text()
    steps = card.split("## Steps")[1].split("##")[0]
    assert steps.index("| `tiny` | baseline") < steps.index("| `tiny-lr` | lr 3e-3 -> 1e-3")


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("tamper, message", [
    (lambda m: m.update(format_version=99), "format_version 99.*newer honed"),
    (lambda m: m.update(classes=["blue"]), "lists 1 classes but model.num_outputs is 2"),
    (lambda m: m.update(classes=["a", "b", "c"], model={"name": "test_resnet", "num_outputs": 3}),
     "lists 3 classes but the weights have 2 outputs"),
    (lambda m: m.pop("preprocessing"), "missing the field 'preprocessing'"),
    (lambda m: m["preprocessing"].update(image_size=100000), "image_size' is 100000"),
    (lambda m: m["preprocessing"].update(image_size="16"), "image_size' must be int"),
    (lambda m: m["model"].update(name="resnet_doesnotexist"), "unknown model"),
    (lambda m: m["files"][WEIGHTS_FILE].update(sha256="0" * 64), "does not match the SHA-256"),
])
def test_tampered_bundle_json_is_refused(bundle, tmp_path, tamper, message):
    copy = _copy(bundle, tmp_path)
    meta = _meta(copy)
    tamper(meta)
    (copy / BUNDLE_FILE).write_text(json.dumps(meta))
    with pytest.raises(HonedError, match=message):
        honed.load(copy)


class _Payload:
    """Unpickling this creates a folder: proof of code execution, if it ever happens."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.mkdir, (str(self.sentinel),)


def test_pickle_renamed_to_safetensors_is_refused_and_never_run(bundle, tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.is_dir()  # the payload is live: unpickling it would leave the sentinel

    sentinel = tmp_path / "sentinel"
    copy = _copy(bundle, tmp_path)
    payload = pickle.dumps({"fc.weight": _Payload(sentinel)})
    (copy / WEIGHTS_FILE).write_bytes(payload)
    with pytest.raises(HonedError, match="does not match the SHA-256"):  # first line of defence: the hash
        honed.load(copy)
    meta = _meta(copy)
    meta["files"][WEIGHTS_FILE]["sha256"] = sha256(payload)  # a careful attacker fixes it
    (copy / BUNDLE_FILE).write_text(json.dumps(meta))
    with pytest.raises(HonedError, match="not a valid safetensors file"):
        honed.load(copy)
    assert not sentinel.exists()


def test_not_a_bundle_and_missing_onnx_are_explained(run_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HonedError, match="not a honed run.*nor a bundle"):
        honed.load(tmp_path / "empty")
    (tmp_path / "junk.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip archive
    with pytest.raises(HonedError, match="no bundle.json"):
        honed.load(tmp_path / "junk.zip")
    plain = export_bundle(run_dir, tmp_path / "plain", fuse=False).path
    assert _meta(plain)["parity"]["checks"] == {}
    with pytest.raises(HonedError, match="no model.onnx.*--format onnx"):
        honed.load(plain, backend="onnx")
    with pytest.raises(HonedError, match="needs a bundle"):
        honed.load(run_dir, backend="onnx")


def test_failed_parity_writes_nothing(run_dir, tmp_path, monkeypatch):
    def broken_fusion(model):
        result = fuse_batchnorm(model)
        with torch.no_grad():
            next(result.model.parameters()).mul_(3.0)  # a folding bug, as parity should see it
        return FusionResult(result.model, result.fused_pairs, result.pairs)

    monkeypatch.setattr(bundle_module, "fuse_batchnorm", broken_fusion)
    with pytest.raises(HonedError, match="parity check failed on 6 validation images.*fusion"):
        export_bundle(run_dir, tmp_path / "bad", formats=["onnx"])
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_existing_target_and_unknown_format(run_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("mine")
    with pytest.raises(HonedError, match="already exists"):
        export_bundle(run_dir, tmp_path / "taken")
    with pytest.raises(HonedError, match="unknown export format.*tflite"):
        export_bundle(run_dir, tmp_path / "new", formats=["tflite"])
    assert (tmp_path / "taken" / "file.txt").read_text() == "mine" and not (tmp_path / "new").exists()
    assert not any(is_temp_name(p.name) for p in tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- command line


def test_export_then_predict_from_the_command_line(run_dir, tmp_path):
    workspace = run_dir.parent
    done = honed_cli("export", "tiny", "--format", "onnx", "--archive", "--out", tmp_path / "b",
                     "--workspace", workspace)
    assert done.returncode == 0, done.stderr
    assert f"bundle written to {tmp_path / 'b.zip'}" in done.stdout
    assert all(word in done.stdout for word in ("fusion", "onnx", "yes"))

    out = tmp_path / "preds.csv"
    red = Path(_images(run_dir)[0]).parents[1] / "red"
    pred = honed_cli("predict", tmp_path / "b.zip", red, "--out", out, "-q", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    table = pd.read_csv(out, keep_default_na=False)
    expected = honed.load(run_dir).predict(table["path"].tolist(), workers=0)
    assert len(table) == 12 and table["prediction"].tolist() == expected["prediction"].tolist()
    np.testing.assert_allclose(table["probability"], expected["probability"], rtol=1e-6)

    missing = honed_cli("export", "nope", "--workspace", workspace, cwd=tmp_path)
    assert missing.returncode == 2
    assert "no run 'nope'" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
