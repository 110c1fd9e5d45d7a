"""Batch mixers: mixup and cutmix, labels mixed as the images are."""

from __future__ import annotations

import torch
from torch import Tensor

from honed.augment.ops.base import BatchMix
from honed.augment.ops.tensors import box_mask, rand


class Mixup(BatchMix):
    """Blend each image with a shuffled partner: ``lam * x_i + (1 - lam) * x_j``, lam ~ Beta(strength,
    strength) per sample; labels blend with the same weights."""

    def mix(
        self, x: Tensor, y: Tensor, perm: Tensor, lam: Tensor, g: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        lx = lam.view(-1, 1, 1, 1).to(x.dtype)
        ly = lam.view(-1, 1).to(y.dtype)
        return lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm]


class CutMix(BatchMix):
    """Paste a box from a shuffled partner covering about ``1 - lam`` of the image, lam ~ Beta(strength,
    strength) per sample; labels are weighted by the exact pasted area."""

    def mix(
        self, x: Tensor, y: Tensor, perm: Tensor, lam: Tensor, g: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        b, _, h, w = x.shape
        side = torch.sqrt(1 - lam)
        cy = rand((b,), g, x.device) * h
        cx = rand((b,), g, x.device) * w
        top = (cy - side * h / 2).round().clamp(0, h)
        bottom = (cy + side * h / 2).round().clamp(0, h)
        left = (cx - side * w / 2).round().clamp(0, w)
        right = (cx + side * w / 2).round().clamp(0, w)
        mask = box_mask(h, w, top, left, bottom, right)
        kept = 1 - (bottom - top) * (right - left) / (h * w)  # exact share of sample i left showing
        ly = kept.view(-1, 1).to(y.dtype)
        return torch.where(mask, x[perm], x), ly * y + (1 - ly) * y[perm]
