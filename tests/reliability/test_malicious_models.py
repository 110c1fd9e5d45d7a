"""Malicious and malformed model files: every loading path refuses each with a HonedError within 2 s, and no
payload ever runs (its sentinel file never appears).

Paths: ``read_state_dict`` (``--weights``, pip weights), ``checkpoint.load_weights`` (run folders, resume),
``load_bundle`` (bundle folder and .zip, with bundle.json re-hashed to match, as an attacker would), and
``honed.load`` / ``honed predict`` on a run folder whose weights file was swapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import honed
from honed.errors import HonedError
from honed.export.bundle import export_bundle
from honed.artifacts.bundle_files import BUNDLE_FILE
from honed.artifacts.bundle_meta import WEIGHTS_FILE
from honed.predict import load as load_bundle
from honed.models.state_dicts import read_state_dict
from honed.artifacts.weights import load_weights
from honed.training.fit import train
from tests.conftest import write_image
from tests.reliability.malicious_models import ModelFile, build_model_corpus, payloads
from tests.training.test_train import tiny_config

REFUSAL_SECONDS = 2.0


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sentinel") / "PWNED"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, sentinel) -> list[ModelFile]:
    return build_model_corpus(tmp_path_factory.mktemp("models"), sentinel)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "colors"
    for i in range(6):
        write_image(root / "red" / f"{i}.png", (200, 40, 40), noise_seed=i)
        write_image(root / "blue" / f"{i}.png", (40, 40, 200), noise_seed=100 + i)
    return train(tiny_config(root, tmp_path_factory.mktemp("ws"), epochs=1)).run_dir


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory) -> Path:
    return export_bundle(run_dir, tmp_path_factory.mktemp("out") / "bundle").path


def _refused(load, target) -> tuple[str, float]:
    """Call ``load(target)``; it must raise HonedError within the time limit. Returns (message, seconds)."""
    start = time.perf_counter()
    with pytest.raises(HonedError) as caught:
        load(target)
    seconds = time.perf_counter() - start
    message = str(caught.value)
    assert message and "Traceback" not in message
    assert seconds < REFUSAL_SECONDS, (target, seconds)
    return message, seconds


def test_the_payloads_are_live(tmp_path):
    """Proof the corpus is dangerous: an unrestricted unpickler (in a throwaway process) runs every payload."""
    for name in payloads(tmp_path / "x"):
        sentinel = tmp_path / name
        stream = payloads(sentinel)[name]
        (tmp_path / f"{name}.pkl").write_bytes(stream)
        code = f"import pickle; pickle.loads(open({str(tmp_path / (name + '.pkl'))!r}, 'rb').read())"
        subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
        for _ in range(50):  # Popen's shell may finish after the interpreter exits
            if sentinel.exists():
                break
            time.sleep(0.05)
        assert sentinel.exists(), name


def test_corpus_covers_pickles_and_safetensors(corpus):
    families = [f.family for f in corpus]
    assert families.count("pickle") >= 20 and families.count("safetensors") >= 15


def test_read_state_dict_refuses_every_file(corpus, sentinel):
    for model_file in corpus:
        message, _ = _refused(read_state_dict, model_file.path)
        assert str(model_file.path) in message
        if model_file.family == "pickle" and model_file.name.endswith((".pkl", ".pth")):
            assert "refused" in message or "could not read" in message
    assert not sentinel.exists()


def test_checkpoint_load_weights_refuses_every_file(corpus, sentinel):
    model = torch.nn.Linear(2, 2)
    for model_file in corpus:
        _refused(lambda path: load_weights(path, model), model_file.path)
    assert not sentinel.exists()


def _rehashed_copy(bundle: Path, payload: bytes, folder: Path) -> Path:
    """The bundle with model.safetensors replaced and bundle.json updated to its hash: only the content
    itself can give it away."""
    copy = Path(shutil.copytree(bundle, folder))
    (copy / WEIGHTS_FILE).write_bytes(payload)
    meta = json.loads((copy / BUNDLE_FILE).read_text())
    meta["files"][WEIGHTS_FILE]["sha256"] = hashlib.sha256(payload).hexdigest()
    (copy / BUNDLE_FILE).write_text(json.dumps(meta))
    return copy


def test_bundles_refuse_every_file_as_their_weights(corpus, bundle, tmp_path, sentinel):
    for index, model_file in enumerate(corpus):
        copy = _rehashed_copy(bundle, model_file.path.read_bytes(), tmp_path / f"b{index}")
        _refused(load_bundle, copy)
        if index % 8 == 0:  # the same through a zip archive and through honed.load
            archive = Path(shutil.make_archive(str(tmp_path / f"z{index}"), "zip", copy))
            _refused(load_bundle, archive)
            _refused(honed.load, copy)
    assert not sentinel.exists()


def test_bundle_files_cannot_point_outside_the_bundle(bundle, tmp_path):
    secret = tmp_path / "outside.safetensors"
    shutil.copy(bundle / WEIGHTS_FILE, secret)
    copy = Path(shutil.copytree(bundle, tmp_path / "linked"))
    (copy / WEIGHTS_FILE).unlink()
    os.symlink(secret, copy / WEIGHTS_FILE)  # same bytes, same hash: only the link gives it away
    message, _ = _refused(load_bundle, copy)
    assert "symbolic link" in message
    meta = json.loads((bundle / BUNDLE_FILE).read_text())
    for name in ("../outside.safetensors", "/etc/passwd", "sub/model.safetensors"):
        tampered = Path(shutil.copytree(bundle, tmp_path / f"named{len(name)}"))
        files = dict(meta["files"])
        files[name] = files[WEIGHTS_FILE]
        (tampered / BUNDLE_FILE).write_text(json.dumps({**meta, "files": files}))
        _refused(load_bundle, tampered)


def test_run_folders_and_predict_refuse_swapped_weights(corpus, run_dir, tmp_path, sentinel):
    from typer.testing import CliRunner

    from tests.reliability.cli_app import cli_app

    image = write_image(tmp_path / "x.png", (200, 40, 40), noise_seed=1)
    for index, model_file in enumerate(corpus[::3]):
        copy = Path(shutil.copytree(run_dir, tmp_path / f"run{index}"))
        (copy / "best.safetensors").write_bytes(model_file.path.read_bytes())
        _refused(honed.load, copy)
        start = time.perf_counter()
        result = CliRunner().invoke(cli_app(), ["predict", str(copy), str(image), "--out",
                                                str(tmp_path / "p.csv"), "-q"])
        assert isinstance(result.exception, HonedError), (model_file.name, result.output, result.exception)
        assert time.perf_counter() - start < REFUSAL_SECONDS
    assert not sentinel.exists()


def test_weights_that_do_not_fit_are_refused_not_crashed(run_dir, tmp_path):
    """A valid safetensors file with the right names but wrong shapes: a HonedError, not torch's RuntimeError."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(run_dir / "best.safetensors"))
    name = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[name] = torch.zeros(1, 1, 1, 1)
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    save_file(tensors, str(copy / "best.safetensors"))
    _refused(honed.load, copy)
