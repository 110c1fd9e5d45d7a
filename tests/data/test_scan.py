"""scan_images: every file decoded up front, bad ones listed with reasons, in input order, quickly."""

from __future__ import annotations

from pathlib import Path
import time

import numpy as np
from PIL import Image
import pytest

from honed.data.scan import BadFile, map_files, scan_images


def noisy_jpeg(path: Path, seed: int, size: int = 32) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, quality=90)
    return str(path)


@pytest.fixture
def mixed_folder(tmp_path) -> tuple[list[str], dict[str, str]]:
    """Good JPEGs with bad files of several kinds mixed in; returns paths and the expected bad reasons."""
    paths = [noisy_jpeg(tmp_path / f"{i}.jpg", i) for i in range(20)]
    full = Path(paths[3]).read_bytes()
    bad = {
        tmp_path / "cut.jpg": ("truncated", full[: len(full) // 2]),
        tmp_path / "empty.jpg": ("zero bytes", b""),
        tmp_path / "page.jpg": ("not an image (looks like HTML)", b"<html><body>gone</body></html>"),
        tmp_path / "._0.jpg": ("macOS metadata (._ file)", b"\x00\x05\x16\x07" + b"\x00" * 60),
    }
    expected = {}
    for position, (path, (reason, data)) in zip((0, 5, 11, 22), bad.items()):
        path.write_bytes(data)
        paths.insert(position, str(path))
        expected[str(path)] = reason
    gone = str(tmp_path / "deleted.jpg")
    paths.append(gone)
    expected[gone] = "file not found"
    return paths, expected


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_scan_finds_every_bad_file_with_its_reason(mixed_folder, threads):
    paths, expected = mixed_folder
    result = scan_images(paths, threads=threads)
    assert result.ok.dtype == bool and len(result.ok) == len(paths)
    assert [p for p, ok in zip(paths, result.ok) if not ok] == [b.path for b in result.bad]  # input order
    assert {b.path: b.reason for b in result.bad} == expected
    assert result.ok.sum() == 20
    assert result.reasons()["truncated"] == 1


def test_progress_reports_increments_that_sum_to_all_files(tmp_path):
    paths = [noisy_jpeg(tmp_path / f"{i}.jpg", i, size=8) for i in range(600)]
    steps: list[int] = []
    result = scan_images(paths, threads=2, progress=steps.append)
    assert sum(steps) == 600 and len(steps) > 1
    assert result.ok.all() and result.bad == []


def test_scan_of_nothing():
    result = scan_images([])
    assert result.ok.shape == (0,) and result.bad == []


def test_map_files_keeps_order_across_threads():
    items = list(range(1000))
    assert map_files(lambda x: x * x, items, threads=3) == [x * x for x in items]


def test_bad_file_record():
    assert BadFile("a.jpg", "truncated").detail == ""


def test_scan_rate_on_cifar_sized_jpegs(tmp_path):
    """A regression guard only (the measured rate is in the report): far below what a 2-core machine does."""
    paths = [noisy_jpeg(tmp_path / f"{i}.jpg", i) for i in range(1500)]
    start = time.perf_counter()
    result = scan_images(paths)
    rate = len(paths) / (time.perf_counter() - start)
    assert result.ok.all()
    assert rate > 300, f"scanned only {rate:.0f} files/s"
