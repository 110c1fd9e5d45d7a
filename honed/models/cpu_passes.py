"""Inference on a CPU in passes of a few images.

A convnet's activations for a batch of 64 photos outgrow a CPU's caches, and each image then costs two to
four times what it costs in a pass of a few. Measured on 2 cores, tf_efficientnet_lite0 in eval mode, ms an
image in passes of 2 / 8 / 64 images (``benchmarks/bench_cpu_passes.py``, benchmarks/RESULTS.md): 128 px
5.7 / 3.3 / 10.2, 224 px 11.5 / 19.8 / 38.8, 288 px 13.8 / 34.5 / 65.1; at 64 px the call's own overhead wins
(4.1 / 2.3 / 1.5). So a pass holds at most ``CPU_PASS_PIXELS`` input pixels: 2 images of 288 px, 3 of 224,
10 of 128, 40 of 64. ``Predictor.predict`` on 153 photos at 288 px: 3.7 s against 11.3 s in passes of 64.
In eval mode no image's output depends on the others (batch norm uses its running statistics), so the
outputs are those of one pass; the loaders' batch size, and so what reaches the caller, does not change.
"""

from __future__ import annotations

import torch
import torch.nn as nn

CPU_PASS_PIXELS = 2 * 288 * 288


def images_per_pass(x: torch.Tensor) -> int:
    """Images of ``x`` [B, C, H, W] that one forward pass takes: all of them off a CPU."""
    if x.device.type != "cpu" or x.dim() != 4:
        return len(x)
    return max(1, CPU_PASS_PIXELS // (x.shape[-2] * x.shape[-1]))


def forward_in_passes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, in passes of ``images_per_pass`` images on a CPU; one pass in train mode, where batch
    norm's statistics would see only the pass."""
    per_pass = images_per_pass(x)
    if model.training or len(x) <= per_pass:
        return model(x)
    return torch.cat([model(part) for part in x.split(per_pass)])
