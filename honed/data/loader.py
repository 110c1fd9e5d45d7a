"""DataLoaders with the defaults a practitioner would pick by hand."""

from __future__ import annotations

import os

from torch.utils.data import DataLoader, Dataset, DistributedSampler


def default_workers() -> int:
    """One worker per core up to 8: decoding is the loader's work; more workers than cores only thrash."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return min(cores, 8)


def make_loader(dataset: Dataset, *, batch_size: int, train: bool, workers: int = -1, seed: int = 0,
                pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Training loaders shuffle in an order fixed by (seed, epoch) - call ``loader.sampler.set_epoch`` - and
    shard across ranks; evaluation loaders keep the dataset's order."""
    workers = default_workers() if workers < 0 else workers
    sampler = None
    if train:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                     drop_last=world_size > 1)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        drop_last=train and len(dataset) > batch_size,
    )
