"""``honed predict`` under torchrun: each rank predicts a contiguous slice of the inputs on its own device and
writes a part file; after every rank reported, rank 0 concatenates the parts in rank order into the output.

Why part files, not ``torch.distributed.gather_object``: gathering pickles every rank's table through the
process group into rank 0's memory at once (on NCCL, through GPU memory), which for millions of rows is
gigabytes in one message. Part files stream: each rank writes its own slice as it would write a whole
output, and rank 0 copies the CSV parts line by line, holding one line at a time. Contiguous slices (rank r
takes rows [r*n/W, (r+1)*n/W)) make "concatenate in rank order" equal "the input order". The output folder
must be one every rank can write and rank 0 can read: on several machines, a shared filesystem.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch.distributed as dist

from honed.errors import HonedError
from honed.tracking.atomic import atomic_path

PARTS_SUFFIX = ".parts"  # <out>.parts/: the ranks' part files, removed after the merge


@dataclass
class ShardedPrediction:
    """What one rank did: its slice of the inputs, and (rank 0) the merged output."""

    rank: int
    world_size: int
    start: int  # this rank's slice of the inputs: [start, stop)
    stop: int
    total: int  # inputs over all ranks
    failed: int  # undecodable inputs in the merged output (rank 0); in this rank's slice (others)
    out: Path | None  # the merged output on rank 0, None elsewhere


def is_distributed_launch() -> bool:
    """True under torchrun (or any launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous slice of ``n`` inputs: sizes differ by at most one, in input order."""
    return n * rank // world_size, n * (rank + 1) // world_size


def part_path(out: Path, rank: int) -> Path:
    """Where rank ``rank`` writes its part: CSV for a .csv output, JSON lines for a .json output."""
    suffix = ".csv" if out.suffix.lower() == ".csv" else ".jsonl"
    return out.parent / (out.name + PARTS_SUFFIX) / f"rank-{rank:05d}{suffix}"


def write_part(frame: pd.DataFrame, out: Path, rank: int) -> Path:
    """This rank's rows, written as the whole output would be (so the merged CSV equals a one-process one)."""
    path = part_path(out, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True)
    return path


def merge_parts(out: Path, world_size: int) -> Path:
    """Concatenate the ranks' parts in rank order into ``out`` (streamed: one line in memory), then remove them."""
    parts = [part_path(out, rank) for rank in range(world_size)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise HonedError(f"rank 0 cannot see the part files {', '.join(missing)}: with several machines, --out "
                         "must be on a filesystem every machine shares")
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as sink:
        if out.suffix.lower() == ".csv":
            for rank, part in enumerate(parts):
                with open(part, encoding="utf-8", newline="") as source:
                    header = source.readline()
                    if rank == 0:
                        sink.write(header)
                    shutil.copyfileobj(source, sink)
        else:  # JSON lines -> one JSON array of records
            sink.write("[")
            first = True
            for part in parts:
                with open(part, encoding="utf-8") as source:
                    for line in source:
                        if line.strip():
                            sink.write(("\n" if first else ",\n") + line.rstrip("\n"))
                            first = False
            sink.write("\n]\n")
    shutil.rmtree(parts[0].parent, ignore_errors=True)
    return out


def predict_sharded(model_path: Path, paths: Sequence[str], out: Path, *, top_k: int = 1, batch_size: int = 64,
                    device: str = "auto", backend: str = "torch", tta: str | None = None, workers: int = -1,
                    progress: Callable[[int], None] | None = None, calibrate: bool = True) -> ShardedPrediction:
    """Predict this rank's slice of ``paths`` and, on rank 0, merge every rank's rows into ``out``.

    Every rank must be given the same ``paths`` (checked): each lists the inputs itself, so no rank ships
    millions of paths to the others. Outside torchrun it runs as one rank and writes ``out`` directly.
    """
    from honed.predict import load
    from honed.runtime import setup_runtime, teardown_runtime

    runtime = setup_runtime(device, "32")
    try:
        _check_same_inputs(paths, runtime.world_size)
        start, stop = shard_bounds(len(paths), runtime.rank, runtime.world_size)
        problem, failed = "", 0
        try:
            predictor = load(model_path, device=str(runtime.device), backend=backend, tta=tta, calibrate=calibrate)
            frame = predictor.predict(list(paths[start:stop]), top_k=top_k, batch_size=batch_size, workers=workers,
                                      progress=progress)
            failed = int((frame["error"] != "").sum())
            write_part(frame, out, runtime.rank)
        except Exception as error:  # reported to every rank below, so none waits forever on a dead peer
            problem = f"{type(error).__name__}: {error}" if not isinstance(error, HonedError) else str(error)
            if not runtime.distributed:
                raise
        outcomes = _gather((problem, failed), runtime.world_size)
        problems = [f"rank {rank}: {p}" for rank, (p, _) in enumerate(outcomes) if p]
        if problems:
            raise HonedError("sharded prediction failed on " + "; ".join(problems))
        merged = merge_parts(out, runtime.world_size) if runtime.is_main else None
        total_failed = sum(f for _, f in outcomes) if runtime.is_main else failed
        return ShardedPrediction(runtime.rank, runtime.world_size, start, stop, len(paths), total_failed, merged)
    finally:
        teardown_runtime(runtime)


def _gather(value, world_size: int) -> list:
    if world_size == 1 or not dist.is_initialized():
        return [value]
    everyone: list = [None] * world_size
    dist.all_gather_object(everyone, value)
    return everyone


def _check_same_inputs(paths: Sequence[str], world_size: int) -> None:
    """Every rank listed the same inputs in the same order (a digest, not the list, crosses the network)."""
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
    digests = _gather((len(paths), digest), world_size)
    if len(set(digests)) > 1:
        raise HonedError(f"the ranks listed different inputs ({sorted(set(n for n, _ in digests))} files): "
                         "give every machine the same files at the same paths (a shared filesystem)")
