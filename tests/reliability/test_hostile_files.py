"""Hostile and broken image files: each is decoded correctly or skipped with its reason; none stops a run.

The corpus (``hostile_corpus.py``) holds truncated downloads, HTML saved as .jpg, placeholders, CMYK, 16-bit,
transparency, all eight EXIF orientations against a pre-rotated reference, decompression bombs, extreme
shapes, macOS ``._`` files and animated containers. A decoder that segfaults in native code is simulated by
patching the scanner's decoder to read address 0 on one file: under the fork start method the patch reaches
the worker processes, which die with SIGSEGV as a crashing codec would.
"""

from __future__ import annotations

import ctypes
import faulthandler
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from honed.data import scan as scan_module
from honed.data.audit import audit
from honed.data.decode import DecodeError, decode_image
from honed.data.scan import can_isolate, scan_images
from tests.conftest import write_image
from tests.reliability.hostile_corpus import Case, block_centres, build_corpus

CORPUS_MIN = 50
DECODE_SECONDS = 2.0  # per file, bombs included: refused from the header, never decoded


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("hostile") / "corpus")


def _check_decoded(case: Case, image: np.ndarray) -> None:
    assert image.dtype == np.uint8 and image.shape == case.reference.shape, (case.name, image.shape)
    got, want = image.astype(int), case.reference.astype(int)
    if case.centres:
        got, want = block_centres(image), block_centres(case.reference)
    assert np.abs(got - want).max() <= case.tolerance, case.name


def test_corpus_is_large_and_mixed(corpus):
    names = [case.name for case in corpus]
    assert len(names) == len(set(names)) >= CORPUS_MIN
    kinds = {case.kind for case in corpus}
    assert kinds == {"skip", "decode"}
    assert sum(case.name.startswith("exif_") and case.name[5].isdigit() for case in corpus) == 16  # 1..8, JPEG+PNG


def test_every_file_is_decoded_correctly_or_skipped_with_its_reason(corpus):
    failures = []
    for case in corpus:
        start = time.perf_counter()
        try:
            image = np.asarray(decode_image(case.path))
        except DecodeError as error:
            if not case.reason_ok(error.reason):
                failures.append(f"{case.name}: refused as {error.reason!r}, expected {case.skip or 'a decode'!r}")
        else:
            if case.skip is not None:
                failures.append(f"{case.name}: decoded, expected a skip for {case.skip!r}")
            else:
                try:
                    _check_decoded(case, image)
                except AssertionError as error:
                    failures.append(f"{case.name}: wrong pixels ({error})")
        assert time.perf_counter() - start < DECODE_SECONDS, case.name
    assert not failures, "\n".join(failures)


def test_sixteen_bit_is_scaled_not_clipped(corpus):
    grey16 = next(case for case in corpus if case.name == "grey16.png")
    image = np.asarray(decode_image(grey16.path))[..., 0]
    assert image.min() == 0 and image.max() == 255
    assert len(np.unique(image)) == 256  # a ramp over 0..65535 keeps every 8-bit level; clipping keeps 2
    dark = np.asarray(decode_image(next(c.path for c in corpus if c.name == "rgb16_dark.png")))
    assert dark[:, 4:].max() <= 2  # 300/65535 is nearly black, not clipped to white


def test_exif_orientation_matches_the_pre_rotated_reference(corpus):
    upright = next(case for case in corpus if case.name == "exif_1.png").reference
    for orientation in range(1, 9):
        case = next(c for c in corpus if c.name == f"exif_{orientation}.png")
        stored = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(case.path).convert("RGB"))
        if orientation > 1:
            assert not np.array_equal(stored, upright)  # the file really holds turned pixels
        np.testing.assert_array_equal(np.asarray(decode_image(case.path)), upright, err_msg=case.name)


def test_scan_lists_every_skipped_file_with_its_reason(corpus):
    paths = [str(case.path) for case in corpus]
    result = scan_images(paths, threads=2)
    bad = {Path(b.path).name: b.reason for b in result.bad}
    expected = {case.name for case in corpus if case.skip is not None}
    assert set(bad) == expected
    for case in corpus:
        assert result.ok[paths.index(str(case.path))] == (case.skip is None)
        if case.skip is not None:
            assert case.reason_ok(bad[case.name]), (case.name, bad[case.name])


def test_audit_records_the_same_bad_files(corpus):
    frame = pd.DataFrame({"path": [str(c.path) for c in corpus], "split": "train", "label": "x"})
    report = audit(frame, threads=2)
    bad = {Path(b.path).name: b.reason for b in report.bad_files}
    assert set(bad) == {case.name for case in corpus if case.skip is not None}


# --- a decoder that crashes in native code ----------------------------------------------------------


def _segfault_on(name: str):
    """decode_image, except that decoding ``name`` reads address 0: SIGSEGV, as a crashing codec would."""

    def decode(path, **kwargs):
        if Path(path).name == name:
            faulthandler.disable()  # the crash is expected: no traceback dump from the dying worker
            ctypes.string_at(0)
        return decode_image(path, **kwargs)

    return decode


needs_fork = pytest.mark.skipif(not can_isolate(), reason="crash isolation needs fork (Linux)")


@needs_fork
def test_a_segfaulting_decoder_costs_one_file_not_the_scan(tmp_path, monkeypatch):
    paths = [str(write_image(tmp_path / f"{i:03d}.png", (i, 100, 200 - i), noise_seed=i)) for i in range(40)]
    (tmp_path / "bad.jpg").write_bytes(b"<html></html>")
    paths.insert(7, str(tmp_path / "bad.jpg"))
    paths.insert(23, str(write_image(tmp_path / "crash.png", (9, 9, 9), noise_seed=99)))
    monkeypatch.setattr(scan_module, "decode_image", _segfault_on("crash.png"))
    steps = []
    result = scan_images(paths, threads=2, progress=steps.append)
    assert sum(steps) == len(paths)
    bad = {Path(b.path).name: b for b in result.bad}
    assert set(bad) == {"crash.png", "bad.jpg"}
    assert bad["crash.png"].reason == "decoder crashed (signal 11)" and "SIGSEGV" in bad["crash.png"].detail
    assert bad["bad.jpg"].reason == "not an image (looks like HTML)"
    assert result.ok.sum() == len(paths) - 2 and not result.ok[23] and not result.ok[7]


@needs_fork
def test_training_goes_on_past_broken_files_and_a_crashing_decoder(tmp_path, monkeypatch, corpus):
    """`honed train` on class folders mixing good images with the whole corpus: it completes and lists the
    skipped files, the one whose decoder segfaults included."""
    from typer.testing import CliRunner

    from tests.reliability.cli_app import cli_app

    data = tmp_path / "data"
    for i in range(12):
        write_image(data / "red" / f"{i}.png", (200, 40, 40), noise_seed=i)
        write_image(data / "blue" / f"{i}.png", (40, 40, 200), noise_seed=100 + i)
    for index, case in enumerate(corpus):
        target = data / ("red", "blue")[index % 2] / case.name
        if case.path.is_symlink() or case.path.is_dir():
            continue  # links and folders are covered by the scan tests; copying them here adds nothing
        shutil.copy(case.path, target)
    shutil.copy(data / "red" / "0.png", data / "red" / "crash.png")
    monkeypatch.setattr(scan_module, "decode_image", _segfault_on("crash.png"))
    ws = tmp_path / "ws"
    result = CliRunner().invoke(cli_app(), ["train", str(data), "--model", "test_resnet", "--image-size", "16",
                                      "--epochs", "1", "--batch-size", "8", "--workers", "0", "--cache", "off",
                                      "--name", "mixed", "--workspace", str(ws), "--quiet"])
    assert result.exit_code == 0, result.output
    listed = pd.read_csv(ws / "mixed" / "bad_files.csv")
    reasons = dict(zip(listed["path"].map(lambda p: Path(p).name), listed["reason"]))
    assert reasons.get("crash.png") == "decoder crashed (signal 11)"
    copied = {case.name for case in corpus if case.skip is not None
              and not (case.path.is_symlink() or case.path.is_dir())}
    missing = copied - set(reasons) - {name for name in copied if name.startswith("._")}
    assert not missing, missing
    assert all(case.reason_ok(reasons[case.name]) for case in corpus if case.name in reasons)
