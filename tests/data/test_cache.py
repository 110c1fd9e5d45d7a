"""DecodedCache: decode once into a memory map, reuse while the files are unchanged, rebuild when one changes."""

from __future__ import annotations

import json
import os
from pathlib import Path
import threading

import numpy as np
from PIL import Image
import pytest

from honed.data import cache as cache_module
from honed.data.cache import DecodedCache, cache_key, default_cache_dir
from honed.data.decode import decode_to_tensor
from honed.errors import HonedError

SIZE = 16


def photo(path: Path, seed: int, shape: tuple[int, int]) -> str:
    """A noisy JPEG of ``shape`` (height, width): non-square, so resizing and cropping both matter."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(path, quality=90)
    return str(path)


@pytest.fixture
def images(tmp_path) -> list[str]:
    folder = tmp_path / "images"
    folder.mkdir()
    shapes = [(24, 40), (40, 24), (16, 16), (50, 33), (9, 30)]
    return [photo(folder / f"{i}.jpg", i, shapes[i % len(shapes)]) for i in range(11)]


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


def count_decodes(monkeypatch) -> list[int]:
    """Count calls of the cache's decoder (a list, so threads can append)."""
    calls: list[int] = []

    def counted(*args, **kwargs):
        calls.append(1)
        return decode_to_tensor(*args, **kwargs)

    monkeypatch.setattr(cache_module, "decode_to_tensor", counted)
    return calls


def test_round_trip_equals_decode_to_tensor(images, cache_dir):
    cache = DecodedCache.build(images, SIZE, cache_dir=cache_dir, threads=2)
    assert cache.images.shape == (len(images), 3, SIZE, SIZE) and cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap)
    for row, path in enumerate(images):
        np.testing.assert_array_equal(cache.images[row], decode_to_tensor(path, SIZE).numpy())
    assert cache.bad == {} and cache.ok.all()


def test_file_is_a_plain_npy_with_a_small_index(images, cache_dir):
    cache = DecodedCache.build(images, SIZE, cache_dir=cache_dir)
    np.testing.assert_array_equal(np.load(cache.location), cache.images)
    index = json.loads(cache.location.with_suffix(".json").read_text())
    assert index["count"] == len(images) and index["size"] == SIZE and index["bad"] == {}
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]  # no temporary files left behind


def test_same_files_and_size_reuse_the_cache_without_decoding(images, cache_dir, monkeypatch):
    first = DecodedCache.build(images, SIZE, cache_dir=cache_dir)
    written = first.location.stat().st_mtime_ns
    calls = count_decodes(monkeypatch)
    second = DecodedCache.build(list(images), SIZE, cache_dir=cache_dir)
    assert second.key == first.key and second.location == first.location
    assert calls == [] and second.location.stat().st_mtime_ns == written
    assert DecodedCache.find(images, SIZE, cache_dir=cache_dir).key == first.key


def test_another_size_or_a_touched_file_gives_a_new_key(images, cache_dir):
    first = DecodedCache.build(images, SIZE, cache_dir=cache_dir)
    assert cache_key(images, SIZE + 1) != first.key
    stat = os.stat(images[4])
    os.utime(images[4], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert DecodedCache.find(images, SIZE, cache_dir=cache_dir) is None
    rebuilt = DecodedCache.build(images, SIZE, cache_dir=cache_dir)
    assert rebuilt.key != first.key and first.location.exists()  # old caches stay until the folder is cleared


def test_changed_content_is_decoded_again(images, cache_dir):
    DecodedCache.build(images, SIZE, cache_dir=cache_dir)
    photo(Path(images[0]), 999, (20, 20))
    stat = os.stat(images[0])
    os.utime(images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # coarse clocks: move it
    rebuilt = DecodedCache.build(images, SIZE, cache_dir=cache_dir)
    np.testing.assert_array_equal(rebuilt.images[0], decode_to_tensor(images[0], SIZE).numpy())


def test_bad_file_is_recorded_not_fatal(images, cache_dir, tmp_path):
    truncated = tmp_path / "images" / "cut.jpg"
    truncated.write_bytes(Path(images[0]).read_bytes()[:200])
    text = tmp_path / "images" / "notes.jpg"
    text.write_text("not an image at all\n" * 10)
    paths = [*images[:3], str(truncated), *images[3:], str(text)]
    cache = DecodedCache.build(paths, SIZE, cache_dir=cache_dir)
    assert sorted(cache.bad) == [3, len(paths) - 1]
    assert cache.bad[3].path == str(truncated) and cache.bad[3].reason
    assert not cache.images[3].any()  # a bad file's row is left black
    np.testing.assert_array_equal(cache.images[4], decode_to_tensor(images[3], SIZE).numpy())
    assert cache.ok.tolist() == [row not in (3, len(paths) - 1) for row in range(len(paths))]
    reopened = DecodedCache.open(cache.location.with_suffix(".json"))
    assert reopened.bad == cache.bad


def test_open_by_either_file_and_refuse_a_mismatch(images, cache_dir):
    cache = DecodedCache.build(images, SIZE, cache_dir=cache_dir)
    assert DecodedCache.open(cache.location).key == cache.key
    index_path = cache.location.with_suffix(".json")
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps({**index, "count": 3}))
    with pytest.raises(HonedError, match="delete"):
        DecodedCache.open(index_path)
    assert DecodedCache.find(images, SIZE, cache_dir=cache_dir) is None  # unreadable: rebuilt, not trusted


def test_concurrent_builders_decode_once(images, cache_dir, monkeypatch):
    calls = count_decodes(monkeypatch)
    results: list[DecodedCache] = []
    builders = [threading.Thread(target=lambda: results.append(DecodedCache.build(images, SIZE, cache_dir=cache_dir)))
                for _ in range(3)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join()
    assert len(results) == 3 and len({r.key for r in results}) == 1
    assert len(calls) == len(images)  # the others waited for the first builder and reused its cache


def test_progress_counts_every_file(images, cache_dir):
    done: list[int] = []
    DecodedCache.build(images, SIZE, cache_dir=cache_dir, progress=done.append)
    assert sum(done) == len(images)


def test_default_folder_follows_honed_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HONED_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere" / "decoded"
    monkeypatch.delenv("HONED_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "honed" / "decoded"


def test_unwritable_folder_names_the_fix(images, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(HonedError, match="HONED_CACHE"):
        DecodedCache.build(images, SIZE, cache_dir=blocker / "decoded")


def test_user_errors(cache_dir, images):
    with pytest.raises(HonedError, match="empty"):
        DecodedCache.build([], SIZE, cache_dir=cache_dir)
    with pytest.raises(HonedError, match="size"):
        DecodedCache.build(images, 0, cache_dir=cache_dir)
