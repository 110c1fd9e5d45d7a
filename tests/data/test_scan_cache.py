"""cached_scan: a run reads the last scan of exactly the same files instead of decoding them all again, and a
changed, added or removed file is scanned afresh."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import honed.data.scan_cache as scan_cache
from honed.data.scan import scan_images
from honed.data.scan_cache import cached_scan


def _jpeg(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def photos(tmp_path) -> list[str]:
    paths = [_jpeg(tmp_path / f"{i}.jpg", i) for i in range(6)]
    full = Path(paths[0]).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    return paths[:2] + [str(tmp_path / "cut.jpg")] + paths[2:] + [str(tmp_path / "empty.jpg"), paths[0]]


def _no_decoding(*args, **kwargs):
    raise AssertionError("scanned again")


def _same(a, b) -> bool:
    return np.array_equal(a.ok, b.ok) and a.bad == b.bad


def test_the_second_scan_of_the_same_files_is_read_back_unchanged(photos, tmp_path, monkeypatch):
    first = cached_scan(photos, cache_dir=tmp_path / "scans")
    assert _same(first, scan_images(photos))  # the plain scan's answer, duplicates and order kept
    assert [b.reason for b in first.bad] == ["truncated", "zero bytes"]
    monkeypatch.setattr(scan_cache, "scan_images", _no_decoding)
    steps = []
    again = cached_scan(photos, cache_dir=tmp_path / "scans", progress=steps.append)
    assert _same(again, first) and steps == []


def test_a_changed_added_or_removed_file_is_scanned_afresh(photos, tmp_path):
    cached_scan(photos, cache_dir=tmp_path / "scans")
    Path(photos[1]).write_bytes(b"<html>moved</html>")  # now a bad file: size and mtime change
    changed = cached_scan(photos, cache_dir=tmp_path / "scans")
    assert not changed.ok[1] and changed.bad[0].path == photos[1]
    added = photos + [_jpeg(tmp_path / "new.jpg", 99)]
    assert cached_scan(added, cache_dir=tmp_path / "scans").ok[-1]
    fewer = cached_scan(photos[3:], cache_dir=tmp_path / "scans")
    assert [b.reason for b in fewer.bad] == ["zero bytes"]
    assert len(list((tmp_path / "scans").glob("*.json"))) == 4


def test_a_damaged_or_unwritable_cache_costs_a_scan_not_an_error(photos, tmp_path):
    cached_scan(photos, cache_dir=tmp_path / "scans")
    (stored,) = (tmp_path / "scans").glob("*.json")
    stored.write_text(json.dumps({"version": 1, "count": len(photos), "bad": [[99, "x", ""]]}))
    assert _same(cached_scan(photos, cache_dir=tmp_path / "scans"), scan_images(photos))
    stored.write_text("{not json")
    assert _same(cached_scan(photos, cache_dir=tmp_path / "scans"), scan_images(photos))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder would go")
    assert _same(cached_scan(photos, cache_dir=blocked), scan_images(photos))


def test_preparing_the_same_data_again_does_not_decode_it_again(color_folder, monkeypatch):
    from honed.config import DataConfig
    from honed.data.prepare import prepare_data

    (color_folder / "red" / "broken.png").write_bytes(b"not a png")
    first = prepare_data(DataConfig(source=str(color_folder)), seed=0)
    monkeypatch.setattr(scan_cache, "scan_images", _no_decoding)
    again = prepare_data(DataConfig(source=str(color_folder)), seed=0)
    assert list(again.bad_files["path"]) == list(first.bad_files["path"]) == [str(color_folder / "red" / "broken.png")]
    assert again.manifest.frame.equals(first.manifest.frame)
