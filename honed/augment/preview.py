"""See a policy before training with it: a PNG grid of originals and augmented draws."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from honed.augment.policy import Policy, parse_policy
from honed.errors import HonedError


def preview_grid(
    images: Tensor,
    policy: Policy | str,
    out_path: str | Path,
    *,
    rows: int = 4,
    draws: int = 7,
    seed: int = 0,
    min_tile: int = 96,
) -> Path:
    """Write a PNG with one row per image (the first ``rows`` of ``images``): the original, then ``draws``
    augmented versions. Batch mixers run too, mixing among the shown images, as in training.

    ``images`` is uint8 ``[N, 3, H, W]``; tiles smaller than ``min_tile`` pixels are enlarged (nearest
    neighbour) so that small images stay legible. Returns the path written.
    """
    from torchvision.utils import save_image

    _check_uint8(images)
    if rows < 1 or draws < 1:
        raise HonedError(f"preview needs rows >= 1 and draws >= 1, got rows={rows}, draws={draws}")
    policy = parse_policy(policy) if isinstance(policy, str) else policy
    originals = images[:rows].float().div(255)
    augmented = _augment(originals, policy, draws, seed)
    grid = torch.cat([originals.unsqueeze(1), augmented], dim=1).flatten(0, 1)
    grid = _enlarge(grid, min_tile)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, out, nrow=draws + 1, padding=2, pad_value=1.0, format="png")
    return out


def _augment(originals: Tensor, policy: Policy, draws: int, seed: int) -> Tensor:
    """``draws`` augmented copies of each original, ``[N, draws, 3, H, W]``."""
    n = originals.shape[0]
    generator = torch.Generator().manual_seed(seed)
    augmenter = policy.build()
    batch = originals.repeat_interleave(draws, dim=0)
    with torch.no_grad():
        batch = augmenter(batch, generator)
        if augmenter.has_mix:
            labels = torch.eye(n).repeat_interleave(draws, dim=0)
            batch, _ = augmenter.mix(batch, labels, generator)
    return batch.view(n, draws, *originals.shape[1:])


def _enlarge(batch: Tensor, min_tile: int) -> Tensor:
    factor = -(-min_tile // min(batch.shape[-2:]))  # ceil
    return F.interpolate(batch, scale_factor=factor, mode="nearest") if factor > 1 else batch


def _check_uint8(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise HonedError(f"preview_grid takes a non-empty uint8 batch [N, 3, H, W], got {got}")
