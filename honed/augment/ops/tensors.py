"""What every augmentation op shares: input checks, random draws that follow one generator, warps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from honed.errors import HonedError

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale


def check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise HonedError(
            f"augmentations take a float batch [B, C, H, W] in [0, 1], got {got}; "
            "convert uint8 images with x.float() / 255"
        )


def check_rgb(x: Tensor, name: str) -> None:
    if x.shape[1] != 3:
        raise HonedError(f"{name} needs 3-channel RGB images, got {x.shape[1]} channels")


def check_targets(y: Tensor, x: Tensor) -> None:
    if not isinstance(y, Tensor) or y.ndim != 2 or not y.is_floating_point() or y.shape[0] != x.shape[0]:
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
        raise HonedError(
            f"mixup/cutmix take float one-hot or soft labels [B, K] matching the batch, got {got}; "
            "convert class indices with torch.nn.functional.one_hot(y, num_classes).float()"
        )


def require_strength(ok: bool, name: str, message: str, strength: float) -> None:
    if not ok:
        raise HonedError(f"{name}: strength {strength:g} is invalid, {message}")


def on_device(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A generator that can draw on ``device``: the given one, or a new one seeded from it."""
    if generator is None or generator.device == device:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def rand(shape: tuple[int, ...], g: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(shape, generator=g, device=device)


def uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device: torch.device) -> Tensor:
    return lo + (hi - lo) * rand((n,), g, device)


def beta_draws(alpha: float, n: int, g: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` draws from Beta(alpha, alpha), reproducible from ``g`` (torch's Beta takes no generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g, device=device))
    draws = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    return torch.as_tensor(draws, dtype=torch.float32, device=device)


def luma(x: Tensor) -> Tensor:
    """Luma ``[B, 1, H, W]`` of an RGB batch."""
    r, g, b = x.unbind(1)
    return (LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b).unsqueeze(1)


def linear_theta(m: Tensor, height: int, width: int, shift: Tensor | None = None) -> Tensor:
    """Turn per-sample 2x2 pixel-space maps (output -> input) into ``affine_grid`` matrices ``[B, 2, 3]``.

    Normalised coordinates stretch x and y differently on non-square images; conjugating by the image
    size keeps rotations and shears true to pixel geometry.
    """
    size = torch.tensor([width, height], dtype=m.dtype, device=m.device)
    lin = m * size[None, None, :] / size[None, :, None]
    shift = torch.zeros(m.shape[0], 2, 1, dtype=m.dtype, device=m.device) if shift is None else shift[..., None]
    return torch.cat([lin, shift], dim=2)


def border_colour(x: Tensor) -> Tensor:
    """``[N, C]`` median colour of the one-pixel frame: the background estimate of object-centric images."""
    frame = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
    return frame.median(dim=-1).values


def warp_affine(x: Tensor, theta: Tensor, padding_mode: str, clamp: bool = True) -> Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return sample_grid(x, grid, padding_mode, clamp)


def sample_grid(x: Tensor, grid: Tensor, padding_mode: str, clamp: bool = True) -> Tensor:
    """Bilinear resampling; ``clamp=False`` for images offset from [0, 1] (minus a background colour)."""
    out = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.clamp_(0.0, 1.0) if clamp else out


def identity_grid(x: Tensor) -> Tensor:
    """Normalised sampling coordinates ``[B, H, W, 2]`` (x, y) of an un-warped batch."""
    eye = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    return F.affine_grid(eye, list(x.shape), align_corners=False)


def box_mask(
    height: int, width: int, top: Tensor, left: Tensor, bottom: Tensor, right: Tensor
) -> Tensor:
    """Per-sample boolean masks ``[B, 1, H, W]`` that are true inside [top, bottom) x [left, right)."""
    rows = torch.arange(height, device=top.device, dtype=top.dtype)[None, :, None]
    cols = torch.arange(width, device=top.device, dtype=top.dtype)[None, None, :]
    inside_rows = (rows >= top[:, None, None]) & (rows < bottom[:, None, None])
    inside_cols = (cols >= left[:, None, None]) & (cols < right[:, None, None])
    return (inside_rows & inside_cols).unsqueeze(1)
