"""CachedBatchLoader keeps make_loader's contract: the same batches, lengths, epochs, shards and order."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
from PIL import Image
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from honed.data.cache import DecodedCache
from honed.data.dataset import ImageDataset
from honed.data.fast_loader import CachedBatchLoader, _resident_arrays, make_fast_loader, read_rows
from honed.data.loader import make_loader
from honed.errors import HonedError


def numbered_images(n: int, size: int = 4) -> np.ndarray:
    """Row i is filled with i (mod 256) plus a per-pixel pattern, so rows and their order are recognisable."""
    pattern = np.arange(3 * size * size, dtype=np.int64).reshape(3, size, size)
    return ((np.arange(n)[:, None, None, None] * 7 + pattern) % 256).astype(np.uint8)


class ArrayDataset(Dataset):
    """What ImageDataset yields, from an array: the reference make_loader is compared against."""

    def __init__(self, images: np.ndarray, targets: np.ndarray):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i].copy()), torch.tensor(self.targets[i])


def collect(loader) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    images, targets = [], []
    for x, y in loader:
        images.append(x)
        targets.append(y)
    return images, targets


def epoch_targets(loader, epoch: int) -> list[int]:
    loader.sampler.set_epoch(epoch)
    return torch.cat(collect(loader)[1]).tolist()


@pytest.mark.parametrize("n, batch, world_size, train", [
    (24, 6, 1, True), (23, 5, 1, True), (23, 5, 2, True), (5, 8, 1, True), (23, 5, 1, False), (5, 8, 2, False),
])
def test_same_batches_and_length_as_make_loader(n, batch, world_size, train):
    images, targets = numbered_images(n), np.arange(n) * 10
    for rank in range(world_size):
        fast = CachedBatchLoader(images, targets, batch_size=batch, train=train, seed=3, rank=rank,
                                 world_size=world_size)
        reference = make_loader(ArrayDataset(images, targets), batch_size=batch, train=train, workers=0, seed=3,
                                rank=rank, world_size=world_size)
        assert len(fast) == len(reference)
        for epoch in (0, 1):
            if train:
                fast.sampler.set_epoch(epoch)
                reference.sampler.set_epoch(epoch)
            got, want = collect(fast), collect(reference)
            assert len(got[0]) == len(want[0]) == len(fast)
            for x, y, ref_x, ref_y in zip(*got, *want):
                assert x.dtype == torch.uint8 and y.dtype == ref_y.dtype
                assert torch.equal(x, ref_x) and torch.equal(y, ref_y)


def test_train_epoch_visits_every_sample_once():
    n = 24
    loader = CachedBatchLoader(numbered_images(n), np.arange(n), batch_size=6, train=True)
    for epoch in range(3):
        assert sorted(epoch_targets(loader, epoch)) == list(range(n))


def test_two_ranks_are_disjoint_and_cover_the_data():
    n = 24
    shards = [epoch_targets(CachedBatchLoader(numbered_images(n), np.arange(n), batch_size=4, train=True, seed=1,
                                              rank=rank, world_size=2), epoch=5) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == n // 2
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(n))


def test_order_is_fixed_by_seed_and_epoch():
    n = 40
    def loader(seed: int) -> CachedBatchLoader:
        return CachedBatchLoader(numbered_images(n), np.arange(n), batch_size=8, train=True, seed=seed)

    assert epoch_targets(loader(0), 1) == epoch_targets(loader(0), 1)
    assert epoch_targets(loader(0), 1) != epoch_targets(loader(0), 2)
    assert epoch_targets(loader(0), 1) != epoch_targets(loader(1), 1)
    same = loader(0)
    assert epoch_targets(same, 1) == epoch_targets(same, 1)  # iterating again repeats the epoch's order


def test_evaluation_keeps_order_and_the_last_partial_batch():
    n, images = 23, numbered_images(23)
    batches, targets = collect(CachedBatchLoader(images, np.arange(n), batch_size=5, train=False))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert np.array_equal(torch.cat(batches).numpy(), images)
    assert torch.cat(targets).tolist() == list(range(n))


def test_device_mode_and_prefetch_equal_the_default():
    n = 30
    images, targets = numbered_images(n), np.arange(n).astype(np.float32)
    outputs = []
    for options in ({}, {"device": "cpu"}, {"prefetch": True}):
        loader = CachedBatchLoader(images, targets, batch_size=7, train=True, seed=2, **options)
        loader.sampler.set_epoch(4)
        outputs.append(collect(loader))
    for other in outputs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outputs[0][0], other[0]))
        assert all(torch.equal(a, b) for a, b in zip(outputs[0][1], other[1]))


def test_resident_batches_equal_the_default():
    """The accelerator-resident path (index_select on device tensors), exercised here with CPU tensors."""
    n = 30
    images, targets = numbered_images(n), np.arange(n)
    default = CachedBatchLoader(images, targets, batch_size=7, train=True, seed=5)
    resident = CachedBatchLoader(images, targets, batch_size=7, train=True, seed=5)
    resident._resident = _resident_arrays(images, targets, torch.device("cpu"))
    default.sampler.set_epoch(3)
    resident.sampler.set_epoch(3)
    for (x, y), (ref_x, ref_y) in zip(resident, default, strict=True):
        assert torch.equal(x, ref_x) and torch.equal(y, ref_y)


def test_breaking_out_early_stops_the_prefetch_thread():
    loader = CachedBatchLoader(numbered_images(50), np.arange(50), batch_size=5, train=True, prefetch=True)
    before = threading.active_count()
    for i, _ in enumerate(loader):
        assert threading.active_count() == before + 1  # the reader thread
        if i == 1:
            break
    assert threading.active_count() == before


def test_read_errors_reach_the_consumer():
    images = numbered_images(10)
    loader = CachedBatchLoader(images, np.arange(10), batch_size=4, train=False, prefetch=True)
    loader.images = images[:2]  # rows past 2 now fail to read, inside the prefetch thread
    with pytest.raises(IndexError):
        collect(loader)


def test_read_rows_returns_sampler_order():
    images = numbered_images(12)
    rows = np.array([9, 2, 11, 0, 5])
    out = np.empty((len(rows), *images.shape[1:]), dtype=np.uint8)
    np.testing.assert_array_equal(read_rows(images, rows, out), images[rows])


def test_argument_errors():
    with pytest.raises(HonedError, match="targets"):
        CachedBatchLoader(numbered_images(4), np.arange(3), batch_size=2, train=True)
    with pytest.raises(HonedError, match="uint8"):
        CachedBatchLoader(numbered_images(4).astype(np.float32), np.arange(4), batch_size=2, train=True)
    with pytest.raises(HonedError, match="batch size"):
        CachedBatchLoader(numbered_images(4), np.arange(4), batch_size=0, train=True)


# --- make_fast_loader over real files -------------------------------------------------------------------


@pytest.fixture
def photo_dataset(tmp_path) -> ImageDataset:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(13):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    frame = pd.DataFrame({"path": paths})
    return ImageDataset(frame, np.arange(13) % 3, image_size=12)


def test_fast_loader_batches_equal_the_datasets_items(photo_dataset, tmp_path):
    fast = make_fast_loader(photo_dataset, batch_size=4, train=True, seed=7, cache_dir=tmp_path / "cache")
    reference = make_loader(photo_dataset, batch_size=4, train=True, workers=0, seed=7)
    assert isinstance(fast, CachedBatchLoader) and len(fast) == len(reference)
    fast.sampler.set_epoch(2)
    reference.sampler.set_epoch(2)
    for (x, y), (ref_x, ref_y) in zip(fast, reference, strict=True):
        assert torch.equal(x, ref_x) and torch.equal(y, ref_y)
    evaluation = make_fast_loader(photo_dataset, batch_size=5, train=False, cache_dir=tmp_path / "cache")
    images = torch.cat([x for x, _ in evaluation])
    assert torch.equal(images, torch.stack([photo_dataset[i][0] for i in range(len(photo_dataset))]))


def test_fast_loader_refuses_a_cache_with_bad_files(photo_dataset, tmp_path):
    with open(photo_dataset.paths[4], "r+b") as f:
        f.truncate(100)
    with pytest.raises(HonedError, match="failed to decode"):
        make_fast_loader(photo_dataset, batch_size=4, train=True, cache_dir=tmp_path / "cache")


def test_fast_loader_reuses_a_given_cache(photo_dataset, tmp_path):
    cache = DecodedCache.build(photo_dataset.paths, 12, cache_dir=tmp_path / "cache")
    loader = make_fast_loader(photo_dataset, batch_size=4, train=False, cache=cache)
    assert loader.images is cache.images


def test_in_memory_datasets_fall_back_to_make_loader():
    frame = pd.DataFrame({"path": ["mem/train/0", "mem/train/1"], "origin": ["train"] * 2, "index": [0, 1]})
    source = [(torch.zeros(3, 8, 8, dtype=torch.uint8), 0), (torch.ones(3, 8, 8, dtype=torch.uint8), 1)]
    dataset = ImageDataset(frame, np.array([0, 1]), 8, datasets={"train": source})
    loader = make_fast_loader(dataset, batch_size=2, train=False, workers=0)
    assert isinstance(loader, DataLoader)
