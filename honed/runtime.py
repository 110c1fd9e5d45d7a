"""Devices, precision and data parallelism, kept out of the training logic.

Under ``torchrun`` (WORLD_SIZE > 1) the process group is set up here: gloo on CPU, nccl on CUDA.
``--precision`` names are registered in ``PRECISIONS``: each gives the autocast dtype for a device
(None: full fp32).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from honed.errors import HonedError
from honed.registry import Registry

AutocastDtype = Callable[[torch.device], "torch.dtype | None"]  # device -> autocast dtype, None: fp32
PRECISIONS: Registry[AutocastDtype] = Registry("precision")  # registration order: the order --precision lists


@dataclass
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full fp32
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def setup_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = _pick_device(device, local_rank if world_size > 1 else None)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
    return Runtime(torch_device, _autocast_dtype(torch_device, precision), rank, world_size)


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def _pick_device(device: str, local_rank: int | None) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HonedError(f"--device {device} asked for, but no CUDA GPU is available: use --device cpu")
        if local_rank is not None and device == "cuda":
            device = f"cuda:{local_rank}"
        # torch.cuda.set_device refuses a bare "cuda": it needs an index, the current GPU's when none is given
        chosen = torch.device(device)
        chosen = torch.device("cuda", torch.cuda.current_device() if chosen.index is None else chosen.index)
        torch.cuda.set_device(chosen)
        return chosen
    if device != "cpu":
        raise HonedError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return torch.device(device)


def _autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    return PRECISIONS[precision](device)


@PRECISIONS.register("auto")
def _auto(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (fp16 where the GPU lacks bf16), full fp32 elsewhere."""
    return _bf16(device) if device.type == "cuda" else None


@PRECISIONS.register("32")
def _fp32(device: torch.device) -> torch.dtype | None:
    return None


@PRECISIONS.register("bf16")
def _bf16(device: torch.device) -> torch.dtype | None:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():  # older GPUs: fp16 is the 16-bit they have
        return torch.float16
    return torch.bfloat16


@PRECISIONS.register("16")
def _fp16(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        raise HonedError("--precision 16 needs a CUDA GPU: use bf16 or 32 on CPU")
    return torch.float16
