"""Device choice without a GPU to hand: torch.cuda's answers are stood in for, so CI (no GPU) checks the calls
honed makes on a GPU machine. ``torch.cuda.set_device`` refuses a device without an index, which broke every
CUDA run until a GPU first ran the code (tests/gpu covers the rest there)."""

from __future__ import annotations

import pytest
import torch

from honed.errors import HonedError
from honed.runtime import setup_runtime


@pytest.fixture
def one_fake_gpu(monkeypatch):
    chosen = []

    def set_device(device):
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
        chosen.append(device)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    return chosen


@pytest.mark.parametrize("asked, expected", [("auto", "cuda:0"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1")])
def test_a_gpu_is_chosen_with_its_index(one_fake_gpu, asked, expected):
    runtime = setup_runtime(asked, "32")
    assert runtime.device == torch.device(expected)
    assert one_fake_gpu == [torch.device(expected)]


def test_cuda_without_a_gpu_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HonedError, match="no CUDA GPU is available: use --device cpu"):
        setup_runtime("cuda", "32")
    assert setup_runtime("auto", "32").device == torch.device("cpu")
