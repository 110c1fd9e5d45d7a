"""DataLoaders with the defaults a practitioner would pick by hand."""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def default_workers() -> int:
    """One worker per core up to 8: decoding is the loader's work; more workers than cores only thrash."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return min(cores, 8)


class ResumableSampler(DistributedSampler):
    """torch's ``DistributedSampler`` (order fixed by (seed, epoch), sharded by rank) that can start an epoch
    part-way: ``set_epoch(epoch, skip=n)`` leaves out this rank's first ``n`` samples of that epoch's order,
    so a run resumed mid-epoch sees exactly the samples it had not yet trained on, in the same order."""

    skip: int = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        if not 0 <= skip <= self.num_samples:
            raise ValueError(f"cannot skip {skip} of an epoch's {self.num_samples} samples")
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        order = list(super().__iter__())
        return iter(order[self.skip:])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def start_epoch(loader, epoch: int, batches_done: int = 0) -> None:
    """Position a training loader (``make_loader``'s or the cached one) at ``epoch``, after the first
    ``batches_done`` batches of it: what a mid-epoch resume needs, and plain ``set_epoch`` when 0."""
    loader.sampler.set_epoch(epoch, skip=batches_done * loader.batch_size)


def make_loader(dataset: Dataset, *, batch_size: int, train: bool, workers: int = -1, seed: int = 0,
                pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Training loaders shuffle in an order fixed by (seed, epoch) - position them with ``start_epoch`` - and
    shard across ranks; evaluation loaders keep the dataset's order.

    The loader draws its workers' seeds from its own generator, never from torch's global one: otherwise
    each ``iter(loader)`` would shift the random stream that dropout uses, and a resumed run (which starts
    iterating at a different moment) would draw different dropout masks than an uninterrupted one."""
    workers = default_workers() if workers < 0 else workers
    sampler = None
    if train:
        sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                   drop_last=world_size > 1)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        drop_last=train and len(dataset) > batch_size,
        generator=torch.Generator().manual_seed(seed + rank),
    )
