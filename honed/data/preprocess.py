"""The deterministic preprocessing shared by training, evaluation and prediction.

Per image (in loader workers, ``honed.data.decode``): decode, resize the shorter side, centre crop ->
uint8 [3, S, S].
Per batch (on the device): to float in [0, 1], then (training only) augment, then normalize.
Evaluation is built from these deterministic steps alone, so no random op can reach it.
"""

from __future__ import annotations

import torch


def to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] -> float32 in [0, 1]."""
    return batch.float().div_(255.0)


def normalize(batch: torch.Tensor, mean, std) -> torch.Tensor:
    """float [B,3,H,W] in [0,1] -> normalized with the model's mean and std."""
    mean_t = torch.as_tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return (batch - mean_t) / std_t
