"""Devices, data parallelism and determinism for the training loop, kept out of its logic: DDP wrapping,
rank 0's decisions and statistics shared with every rank, a check that the ranks agree at the end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from honed.errors import HonedError
from honed.runtime import Runtime
from honed.tracking.atomic import write_text


@contextlib.contextmanager
def deterministic_algorithms(on: bool, *, strict: bool):
    """--deterministic: torch's deterministic kernels (an error on CPU for an op that has none, a warning on
    GPU, where a few common ops have none), no cuDNN autotuning; the caller's settings come back afterwards."""
    if not on:
        yield
        return
    cudnn = torch.backends.cudnn
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                cudnn.benchmark, cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS is deterministic only with this set
    torch.use_deterministic_algorithms(True, warn_only=not strict)
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        cudnn.benchmark, cudnn.deterministic = previous[2], previous[3]


def sync_buffers(model: nn.Module, runtime: Runtime) -> None:
    """Give every rank rank 0's batch-norm statistics: DDP keeps parameters equal, but each rank's running
    statistics come from its own shard of the batch. Rank 0's are the ones evaluated and saved."""
    if runtime.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def decided_on_rank0(flag: bool, runtime: Runtime) -> bool:
    """Rank 0's yes or no (it evaluates, so it decides, e.g. early stopping), shared with every rank."""
    value = torch.tensor(int(flag))
    if runtime.distributed:
        value = value.to(runtime.device)
        dist.broadcast(value, src=0)
    return bool(value.item())


def wrap_data_parallel(model: nn.Module, runtime: Runtime) -> nn.Module:
    if not runtime.distributed:
        return model
    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def agree_across_ranks(model: nn.Module, runtime: Runtime, run_dir: Path) -> str:
    """Hash the final weights; under data parallelism every rank must hold the same ones."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    mine = digest.hexdigest()
    if runtime.distributed:
        everyone: list[str] = [""] * runtime.world_size
        dist.all_gather_object(everyone, mine)
        if runtime.is_main:
            write_text(run_dir / "distributed.json", json.dumps(
                {"world_size": runtime.world_size, "weights_sha256": everyone, "agree": len(set(everyone)) == 1},
                indent=2))
        if len(set(everyone)) != 1:
            raise HonedError(f"data-parallel ranks disagree on the final weights: {everyone}")
    return mine
