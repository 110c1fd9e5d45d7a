"""The deterministic preprocessing shared by training, evaluation and prediction.

Per image (in loader workers): decode, resize the shorter side, centre crop -> uint8 [3, S, S].
Per batch (on the device): to float in [0, 1], then (training only) augment, then normalize.
Evaluation is built from these deterministic steps alone, so no random op can reach it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def image_to_uint8(image) -> torch.Tensor:
    """A PIL image, numpy HWC array or [C,H,W] tensor -> RGB uint8 tensor [3, H, W]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        array = image if image.ndim == 3 else image[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    else:
        tensor = image
    if tensor.dtype.is_floating_point:
        tensor = (tensor.clamp(0, 1) * 255).round().to(torch.uint8)
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    if tensor.shape[0] == 4:
        tensor = tensor[:3]
    return tensor.contiguous()


def resize_center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [3, H, W] -> uint8 [3, size, size]: shorter side to ``size`` (antialiased), then centre crop."""
    _, height, width = image.shape
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
        resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode="bilinear",
                                antialias=True, align_corners=False)[0]
        image = resized.round_().clamp_(0, 255).to(torch.uint8)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        image = image[:, top:top + size, left:left + size]
    return image.contiguous()


def to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] -> float32 in [0, 1]."""
    return batch.float().div_(255.0)


def normalize(batch: torch.Tensor, mean, std) -> torch.Tensor:
    """float [B,3,H,W] in [0,1] -> normalized with the model's mean and std."""
    mean_t = torch.as_tensor(mean, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
    return (batch - mean_t) / std_t
