"""Geometric ops: flips, crops, affine warps, perspective, elastic; one ``grid_sample`` per batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from honed.augment.ops.base import BatchAugmentation
from honed.augment.ops.tensors import (
    border_colour,
    identity_grid,
    linear_theta,
    rand,
    sample_grid,
    uniform,
    warp_affine,
)


class HFlip(BatchAugmentation):
    """Mirror left-right. Strength is unused."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return x.flip(-1)


class VFlip(BatchAugmentation):
    """Mirror top-bottom. Strength is unused."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return x.flip(-2)


class QuarterTurn(BatchAugmentation):
    """Turn by a random multiple of 90 degrees (1, 2 or 3 quarters): the sideways and upside-down images a
    wrong EXIF orientation or a scanner produces. Square images only (honed's batches are). Strength unused."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        if x.shape[-1] != x.shape[-2]:
            return x
        turns = (rand((x.shape[0],), g, x.device) * 3).long().clamp_(max=2) + 1
        out = x
        for k in (1, 2, 3):
            out = torch.where((turns == k).view(-1, 1, 1, 1), torch.rot90(x, k, dims=(-2, -1)), out)
        return out


class Crop(BatchAugmentation):
    """Reflect-pad by ``strength`` then crop back to size at a random offset (the CIFAR recipe).

    Strength >= 1 is the pad in pixels; below 1 it is a fraction of the shorter image side.
    """

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        pad = int(round(self.strength if self.strength >= 1 else self.strength * min(h, w)))
        pad = min(pad, h - 1, w - 1)
        if pad <= 0:
            return x
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = (rand((b,), g, x.device) * (2 * pad + 1)).long().clamp_(max=2 * pad)
        dx = (rand((b,), g, x.device) * (2 * pad + 1)).long().clamp_(max=2 * pad)
        # one gather over flat pixel indices: several times faster than 4-d advanced indexing on CPU
        width = padded.shape[-1]
        rows = dy[:, None, None] + torch.arange(h, device=x.device)[None, :, None]
        cols = dx[:, None, None] + torch.arange(w, device=x.device)[None, None, :]
        flat = (rows * width + cols).view(b, 1, h * w).expand(-1, x.shape[1], -1)
        return padded.flatten(2).gather(2, flat).view(b, x.shape[1], h, w)


class ResizedCrop(BatchAugmentation):
    """Crop a random box (area fraction in [strength, 1], aspect 3/4..4/3) and resize it to full size."""

    ratio = (3 / 4, 4 / 3)

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, dev = x.shape[0], x.device
        area = uniform(b, self.strength, 1.0, g, dev)
        log_ratio = uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), g, dev)
        bw = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # box width / image width
        bh = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
        cx = (2 * rand((b,), g, dev) - 1) * (1 - bw)  # box centre, normalised, box stays inside
        cy = (2 * rand((b,), g, dev) - 1) * (1 - bh)
        zero = torch.zeros_like(bw)
        theta = torch.stack([torch.stack([bw, zero, cx], 1), torch.stack([zero, bh, cy], 1)], 1)
        return warp_affine(x, theta, "border")


class Translate(BatchAugmentation):
    """Shift by up to ``strength`` (fraction of the image size) along each axis; uncovered area is black."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, dev = x.shape[0], x.device
        shift = 2 * uniform(2 * b, -self.strength, self.strength, g, dev).view(b, 2)
        eye = torch.eye(2, device=dev).expand(b, 2, 2)
        return warp_affine(x, torch.cat([eye, shift[..., None]], 2), self.padding_mode)


class Rotate(BatchAugmentation):
    """Rotate by an angle in [-strength, strength] degrees about the centre; corners are black."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return self.warp(x, uniform(x.shape[0], -self.strength, self.strength, g, x.device))

    def warp(self, x: Tensor, degrees: Tensor, clamp: bool = True) -> Tensor:
        """Rotate sample i by ``degrees[i]`` (counter-clockwise on screen)."""
        angle = torch.deg2rad(degrees)
        cos, sin = angle.cos(), angle.sin()
        m = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
        return warp_affine(x, linear_theta(m, x.shape[2], x.shape[3]), self.padding_mode, clamp)


class Scale(BatchAugmentation):
    """Zoom out: shrink the content by a factor in [strength, 1] about the centre, surrounded by each image's
    border colour.

    A smaller object in a real photo has more background around it, not a black frame; a black frame would be
    a cue of its own that smaller objects in the data never carry. Measured on CIFAR validation objects shrunk
    to 0.4x inside their background (``benchmarks/results_shift.md``): ``scale:0.4@0.8`` for 16 epochs won back
    80% of the lost accuracy with this fill, 29% with black.
    """

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return self.warp(x, uniform(x.shape[0], self.strength, 1.0, g, x.device))

    def warp(self, x: Tensor, factors: Tensor) -> Tensor:
        """Shrink sample i by ``factors[i]`` (0.5: half the width and height) about the centre."""
        inv = 1.0 / factors
        m = torch.diag_embed(torch.stack([inv, inv], 1))
        background = border_colour(x)[:, :, None, None]
        theta = torch.cat([m, torch.zeros_like(m[..., :1])], 2)
        return (warp_affine(x - background, theta, self.padding_mode, clamp=False) + background).clamp_(0.0, 1.0)


class Shear(BatchAugmentation):
    """Shear along x and y by independent angles in [-strength, strength] degrees; corners are black."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        tan = torch.deg2rad(uniform(2 * b, -self.strength, self.strength, g, x.device)).tan().view(b, 2)
        one = torch.ones(b, device=x.device)
        m = torch.stack([torch.stack([one, tan[:, 0]], 1), torch.stack([tan[:, 1], one], 1)], 1)
        return warp_affine(x, linear_theta(m, h, w), self.padding_mode)


class Perspective(BatchAugmentation):
    """Move each corner inwards by up to ``strength`` (fraction of the half-size) and warp to match."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, dev = x.shape[0], x.device
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=dev)
        inward = self.strength * rand((b, 4, 2), g, dev)
        moved = corners * (1 - inward)  # where the image corners land in the output
        h = _homography(moved, corners.expand(b, 4, 2))  # output -> input
        grid = identity_grid(x).flatten(1, 2)  # [B, HW, 2]
        ones = torch.ones_like(grid[..., :1])
        mapped = torch.cat([grid, ones], -1) @ h.transpose(1, 2).to(x.dtype)
        mapped = mapped[..., :2] / mapped[..., 2:].clamp(min=1e-6)
        return sample_grid(x, mapped.view(x.shape[0], x.shape[2], x.shape[3], 2), self.padding_mode)


def _homography(src: Tensor, dst: Tensor) -> Tensor:
    """Per-sample 3x3 homographies mapping 4 ``src`` points onto 4 ``dst`` points (``[B, 4, 2]`` each)."""
    sx, sy = src.unbind(-1)
    dx, dy = dst.unbind(-1)
    zero, one = torch.zeros_like(sx), torch.ones_like(sx)
    rows_x = torch.stack([sx, sy, one, zero, zero, zero, -sx * dx, -sy * dx], -1)
    rows_y = torch.stack([zero, zero, zero, sx, sy, one, -sx * dy, -sy * dy], -1)
    a = torch.cat([rows_x, rows_y], 1)  # [B, 8, 8]
    rhs = torch.cat([dx, dy], 1).unsqueeze(-1)  # [B, 8, 1]
    coeffs = torch.linalg.solve(a, rhs).squeeze(-1)
    return torch.cat([coeffs, torch.ones_like(coeffs[:, :1])], 1).view(-1, 3, 3)


class Elastic(BatchAugmentation):
    """Smooth random warp: displacements up to ``strength`` (fraction of the image size) on a coarse
    control grid, upsampled bicubically. Cheaper and smoother than a blurred per-pixel field."""

    control_points = 5  # per side; more points make the warp wigglier

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        k = self.control_points
        coarse = (2 * rand((b, 2, k, k), g, x.device) - 1) * (2 * self.strength)
        field = F.interpolate(coarse.to(x.dtype), size=(h, w), mode="bicubic", align_corners=True)
        return sample_grid(x, identity_grid(x) + field.permute(0, 2, 3, 1), "border")
