"""Batched augmentations: each draws its own random parameters per sample and runs on the batch's device.

Input is a float batch ``[B, C, H, W]`` in ``[0, 1]`` (the training loop converts uint8 and moves it to the
device first); output has the same shape, dtype and range. Geometric ops build one matrix (or sampling grid)
per sample and warp the whole batch with one ``grid_sample``; colour ops scale per-sample factors; blur uses
one grouped convolution with a kernel per sample. Only ``jpeg`` leaves the device (a Pillow encode per sample).

``strength`` means something per op (documented on each class and in the registry help); every op also takes
``p``, the probability that a sample is augmented at all.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from honed.augment.registry import register_augmentation
from honed.errors import HonedError

# ---------------------------------------------------------------------------------------------------------
# Interfaces
# ---------------------------------------------------------------------------------------------------------


class BatchAugmentation(nn.Module):
    """An image augmentation applied to each sample with probability ``p``, with per-sample parameters.

    Subclasses implement :meth:`apply`, which augments every sample it is given; ``forward`` picks the
    samples and leaves the others untouched. ``p == 0`` returns the input unchanged.
    """

    def __init__(self, *, strength: float, p: float) -> None:
        super().__init__()
        self.strength = strength
        self.p = p

    select_subset = False  # True for ops too costly to run on unchosen samples (they sync with the host)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_images(x)
        if self.p <= 0:
            return x
        g = _on_device(generator, x.device)
        chosen = _rand((x.shape[0],), g, x.device) < self.p
        if self.p >= 1:
            return self.apply(x, g)
        if not self.select_subset:
            # every sample augmented, the unchosen ones put back: no host synchronisation on the GPU
            return torch.where(chosen.view(-1, 1, 1, 1), self.apply(x, g), x)
        if not bool(chosen.any()):
            return x
        idx = chosen.nonzero().squeeze(1)
        out = x.clone()
        out[idx] = self.apply(x[idx], g)
        return out

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        """Augment every sample of ``x`` with its own random parameters drawn from ``g``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"strength={self.strength:g}, p={self.p:g}"


class BatchMix(nn.Module):
    """A batch-level mixer (mixup, cutmix): mixes images with a shuffled partner and their labels alike.

    ``forward(x, y)`` takes float images ``[B, C, H, W]`` and one-hot or soft labels ``[B, K]`` and returns
    mixed ``(x, y)``. Each sample is mixed with probability ``p``; label mass per row is conserved.
    """

    def __init__(self, *, strength: float, p: float) -> None:
        super().__init__()
        self.strength = strength
        self.p = p

    def forward(
        self, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        _check_images(x)
        _check_targets(y, x)
        g = _on_device(generator, x.device)
        batch = x.shape[0]
        chosen = _rand((batch,), g, x.device) < self.p
        if batch < 2 or not bool(chosen.any()):
            return x, y
        perm = torch.randperm(batch, generator=g, device=x.device)
        lam = _beta(self.strength, batch, g, x.device)
        lam = torch.where(chosen, lam, torch.ones_like(lam))  # unchosen samples keep all of themselves
        return self.mix(x, y, perm, lam, g)

    def mix(
        self, x: Tensor, y: Tensor, perm: Tensor, lam: Tensor, g: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Mix sample i with sample ``perm[i]``, keeping about ``lam[i]`` of sample i."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"strength={self.strength:g}, p={self.p:g}"


# ---------------------------------------------------------------------------------------------------------
# Helpers: checks, random draws, warps
# ---------------------------------------------------------------------------------------------------------

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise HonedError(
            f"augmentations take a float batch [B, C, H, W] in [0, 1], got {got}; "
            "convert uint8 images with x.float() / 255"
        )


def _check_rgb(x: Tensor, name: str) -> None:
    if x.shape[1] != 3:
        raise HonedError(f"{name} needs 3-channel RGB images, got {x.shape[1]} channels")


def _check_targets(y: Tensor, x: Tensor) -> None:
    if not isinstance(y, Tensor) or y.ndim != 2 or not y.is_floating_point() or y.shape[0] != x.shape[0]:
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
        raise HonedError(
            f"mixup/cutmix take float one-hot or soft labels [B, K] matching the batch, got {got}; "
            "convert class indices with torch.nn.functional.one_hot(y, num_classes).float()"
        )


def _require(ok: bool, name: str, message: str, strength: float) -> None:
    if not ok:
        raise HonedError(f"{name}: strength {strength:g} is invalid, {message}")


def _on_device(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A generator that can draw on ``device``: the given one, or a new one seeded from it."""
    if generator is None or generator.device == device:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def _rand(shape: tuple[int, ...], g: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(shape, generator=g, device=device)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device: torch.device) -> Tensor:
    return lo + (hi - lo) * _rand((n,), g, device)


def _beta(alpha: float, n: int, g: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` draws from Beta(alpha, alpha), reproducible from ``g`` (torch's Beta takes no generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g, device=device))
    draws = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    return torch.as_tensor(draws, dtype=torch.float32, device=device)


def _gray(x: Tensor) -> Tensor:
    """Luma ``[B, 1, H, W]`` of an RGB batch."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _linear_theta(m: Tensor, height: int, width: int, shift: Tensor | None = None) -> Tensor:
    """Turn per-sample 2x2 pixel-space maps (output -> input) into ``affine_grid`` matrices ``[B, 2, 3]``.

    Normalised coordinates stretch x and y differently on non-square images; conjugating by the image
    size keeps rotations and shears true to pixel geometry.
    """
    size = torch.tensor([width, height], dtype=m.dtype, device=m.device)
    lin = m * size[None, None, :] / size[None, :, None]
    shift = torch.zeros(m.shape[0], 2, 1, dtype=m.dtype, device=m.device) if shift is None else shift[..., None]
    return torch.cat([lin, shift], dim=2)


def _warp_affine(x: Tensor, theta: Tensor, padding_mode: str) -> Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return _sample(x, grid, padding_mode)


def _sample(x: Tensor, grid: Tensor, padding_mode: str) -> Tensor:
    out = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.clamp_(0.0, 1.0)


def _identity_grid(x: Tensor) -> Tensor:
    """Normalised sampling coordinates ``[B, H, W, 2]`` (x, y) of an un-warped batch."""
    eye = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    return F.affine_grid(eye, list(x.shape), align_corners=False)


def _box_mask(
    height: int, width: int, top: Tensor, left: Tensor, bottom: Tensor, right: Tensor
) -> Tensor:
    """Per-sample boolean masks ``[B, 1, H, W]`` that are true inside [top, bottom) x [left, right)."""
    rows = torch.arange(height, device=top.device, dtype=top.dtype)[None, :, None]
    cols = torch.arange(width, device=top.device, dtype=top.dtype)[None, None, :]
    inside_rows = (rows >= top[:, None, None]) & (rows < bottom[:, None, None])
    inside_cols = (cols >= left[:, None, None]) & (cols < right[:, None, None])
    return (inside_rows & inside_cols).unsqueeze(1)


# ---------------------------------------------------------------------------------------------------------
# Geometric
# ---------------------------------------------------------------------------------------------------------


class HFlip(BatchAugmentation):
    """Mirror left-right. Strength is unused."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return x.flip(-1)


class VFlip(BatchAugmentation):
    """Mirror top-bottom. Strength is unused."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return x.flip(-2)


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
        dy = (_rand((b,), g, x.device) * (2 * pad + 1)).long().clamp_(max=2 * pad)
        dx = (_rand((b,), g, x.device) * (2 * pad + 1)).long().clamp_(max=2 * pad)
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
        area = _uniform(b, self.strength, 1.0, g, dev)
        log_ratio = _uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), g, dev)
        bw = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # box width / image width
        bh = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
        cx = (2 * _rand((b,), g, dev) - 1) * (1 - bw)  # box centre, normalised, box stays inside
        cy = (2 * _rand((b,), g, dev) - 1) * (1 - bh)
        zero = torch.zeros_like(bw)
        theta = torch.stack([torch.stack([bw, zero, cx], 1), torch.stack([zero, bh, cy], 1)], 1)
        return _warp_affine(x, theta, "border")


class Translate(BatchAugmentation):
    """Shift by up to ``strength`` (fraction of the image size) along each axis; uncovered area is black."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, dev = x.shape[0], x.device
        shift = 2 * _uniform(2 * b, -self.strength, self.strength, g, dev).view(b, 2)
        eye = torch.eye(2, device=dev).expand(b, 2, 2)
        return _warp_affine(x, torch.cat([eye, shift[..., None]], 2), self.padding_mode)


class Rotate(BatchAugmentation):
    """Rotate by an angle in [-strength, strength] degrees about the centre; corners are black."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return self.warp(x, _uniform(x.shape[0], -self.strength, self.strength, g, x.device))

    def warp(self, x: Tensor, degrees: Tensor) -> Tensor:
        """Rotate sample i by ``degrees[i]`` (counter-clockwise on screen)."""
        angle = torch.deg2rad(degrees)
        cos, sin = angle.cos(), angle.sin()
        m = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
        return _warp_affine(x, _linear_theta(m, x.shape[2], x.shape[3]), self.padding_mode)


class Scale(BatchAugmentation):
    """Zoom out: shrink the content by a factor in [strength, 1] about the centre, padding with black."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        return self.warp(x, _uniform(x.shape[0], self.strength, 1.0, g, x.device))

    def warp(self, x: Tensor, factors: Tensor) -> Tensor:
        """Shrink sample i by ``factors[i]`` (0.5: half the width and height) about the centre."""
        inv = 1.0 / factors
        m = torch.diag_embed(torch.stack([inv, inv], 1))
        return _warp_affine(x, torch.cat([m, torch.zeros_like(m[..., :1])], 2), self.padding_mode)


class Shear(BatchAugmentation):
    """Shear along x and y by independent angles in [-strength, strength] degrees; corners are black."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        tan = torch.deg2rad(_uniform(2 * b, -self.strength, self.strength, g, x.device)).tan().view(b, 2)
        one = torch.ones(b, device=x.device)
        m = torch.stack([torch.stack([one, tan[:, 0]], 1), torch.stack([tan[:, 1], one], 1)], 1)
        return _warp_affine(x, _linear_theta(m, h, w), self.padding_mode)


class Perspective(BatchAugmentation):
    """Move each corner inwards by up to ``strength`` (fraction of the half-size) and warp to match."""

    padding_mode = "zeros"

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, dev = x.shape[0], x.device
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=dev)
        inward = self.strength * _rand((b, 4, 2), g, dev)
        moved = corners * (1 - inward)  # where the image corners land in the output
        h = _homography(moved, corners.expand(b, 4, 2))  # output -> input
        grid = _identity_grid(x).flatten(1, 2)  # [B, HW, 2]
        ones = torch.ones_like(grid[..., :1])
        mapped = torch.cat([grid, ones], -1) @ h.transpose(1, 2).to(x.dtype)
        mapped = mapped[..., :2] / mapped[..., 2:].clamp(min=1e-6)
        return _sample(x, mapped.view(x.shape[0], x.shape[2], x.shape[3], 2), self.padding_mode)


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
        coarse = (2 * _rand((b, 2, k, k), g, x.device) - 1) * (2 * self.strength)
        field = F.interpolate(coarse.to(x.dtype), size=(h, w), mode="bicubic", align_corners=True)
        return _sample(x, _identity_grid(x) + field.permute(0, 2, 3, 1), "border")


# ---------------------------------------------------------------------------------------------------------
# Photometric
# ---------------------------------------------------------------------------------------------------------


class ColorJitter(BatchAugmentation):
    """Brightness, contrast and saturation factors in [1 - strength, 1 + strength] and a hue rotation of up
    to strength / 4 turns, per sample. Hue turns about the grey axis in YIQ space (close to an HSV shift)."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        _check_rgb(x, "color")
        b, dev, s = x.shape[0], x.device, self.strength
        lo = max(0.0, 1.0 - s)
        bright, contrast, sat = _uniform(3 * b, lo, 1.0 + s, g, dev).view(3, b, 1, 1, 1).to(x.dtype)
        hue = _uniform(b, -min(s / 4, 0.5), min(s / 4, 0.5), g, dev)
        x = (x * bright).clamp(0, 1)
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean).clamp(0, 1)
        gray = _gray(x)
        x = ((x - gray) * sat + gray).clamp(0, 1)
        return torch.einsum("bij,bjhw->bihw", _hue_matrix(hue).to(x.dtype), x).clamp_(0, 1)


def _hue_matrix(turns: Tensor) -> Tensor:
    """Per-sample RGB matrices ``[B, 3, 3]`` rotating chroma by ``turns`` about the grey axis (YIQ)."""
    yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=turns.device
    )
    angle = 2 * math.pi * turns
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rot = torch.stack(
        [torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1), torch.stack([zero, sin, cos], 1)], 1
    )
    return torch.linalg.inv(yiq) @ rot @ yiq


class ChannelShift(BatchAugmentation):
    """Add an offset in [-strength, strength] to each colour channel of each sample (a colour cast)."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, c = x.shape[:2]
        shift = _uniform(b * c, -self.strength, self.strength, g, x.device).view(b, c, 1, 1)
        return (x + shift.to(x.dtype)).clamp_(0, 1)


class Grayscale(BatchAugmentation):
    """Replace colour by luma in all three channels. Strength is unused."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        _check_rgb(x, "grayscale")
        return _gray(x).expand_as(x).contiguous()


class Noise(BatchAugmentation):
    """Add gaussian pixel noise with a per-sample sigma in [0, strength] (image intensities are 0..1)."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        sigma = _uniform(x.shape[0], 0.0, self.strength, g, x.device).view(-1, 1, 1, 1)
        noise = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return (x + noise * sigma.to(x.dtype)).clamp_(0, 1)


class Blur(BatchAugmentation):
    """Gaussian blur with a per-sample sigma in [0.1, strength] pixels, as one grouped separable
    convolution (a kernel per sample, sized for the largest sigma)."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, c, h, w = x.shape
        radius = min(math.ceil(3 * self.strength), h - 1, w - 1)
        if radius <= 0:
            return x
        sigma = _uniform(b, 0.1, max(self.strength, 0.1), g, x.device)
        offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=sigma.dtype)
        kernel = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma[:, None] ** 2))
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0).to(x.dtype)  # [B*C, K]
        flat = x.reshape(1, b * c, h, w)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=b * c)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=b * c)
        return flat.view(b, c, h, w).clamp_(0, 1)


class Jpeg(BatchAugmentation):
    """JPEG compression artefacts at a per-sample quality in [strength, 95] (1..100, lower is harsher).

    Cost: encodes and decodes each sample on the CPU with Pillow (about 0.1 ms for a 32 px image, a few ms
    at 224 px) and copies to and from the device, so keep ``p`` modest on large batches.
    """

    select_subset = True

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        _check_rgb(x, "jpeg")
        lo, hi = int(self.strength), max(int(self.strength), 95)
        quality = (lo + _rand((x.shape[0],), g, x.device) * (hi - lo + 1)).long().clamp_(max=hi).tolist()
        pixels = (x * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        decoded = np.stack([_jpeg_round_trip(img, q) for img, q in zip(pixels, quality)])
        return torch.from_numpy(decoded).to(device=x.device, dtype=x.dtype).permute(0, 3, 1, 2).div(255)


def _jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Encode an ``[H, W, 3]`` uint8 image as JPEG at ``quality`` and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


class Erase(BatchAugmentation):
    """Random erasing (cutout): fill a box of area fraction in [0.02, strength] and aspect 0.3..3.3 with
    uniform noise."""

    ratio = (0.3, 1 / 0.3)

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        dev = x.device
        area = _uniform(b, min(0.02, self.strength), self.strength, g, dev) * h * w
        ratio = _uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), g, dev).exp()
        bh = torch.sqrt(area / ratio).clamp(max=h)
        bw = torch.sqrt(area * ratio).clamp(max=w)
        top = _rand((b,), g, dev) * (h - bh)
        left = _rand((b,), g, dev) * (w - bw)
        mask = _box_mask(h, w, top.round(), left.round(), (top + bh).round(), (left + bw).round())
        fill = torch.rand(x.shape, generator=g, device=dev, dtype=x.dtype)
        return torch.where(mask, fill, x)


# ---------------------------------------------------------------------------------------------------------
# Batch mixers
# ---------------------------------------------------------------------------------------------------------


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
        cy = _rand((b,), g, x.device) * h
        cx = _rand((b,), g, x.device) * w
        top = (cy - side * h / 2).round().clamp(0, h)
        bottom = (cy + side * h / 2).round().clamp(0, h)
        left = (cx - side * w / 2).round().clamp(0, w)
        right = (cx + side * w / 2).round().clamp(0, w)
        mask = _box_mask(h, w, top, left, bottom, right)
        kept = 1 - (bottom - top) * (right - left) / (h * w)  # exact share of sample i left showing
        ly = kept.view(-1, 1).to(y.dtype)
        return torch.where(mask, x[perm], x), ly * y + (1 - ly) * y[perm]


# ---------------------------------------------------------------------------------------------------------
# Registrations: name, defaults and what strength means; each hands off to its class.
# ---------------------------------------------------------------------------------------------------------


@register_augmentation("hflip", default_strength=0.0, default_p=0.5, help="mirror left-right; strength unused")
def hflip(strength: float, p: float) -> BatchAugmentation:
    return HFlip(strength=strength, p=p)


@register_augmentation("vflip", default_strength=0.0, default_p=0.5, help="mirror top-bottom; strength unused")
def vflip(strength: float, p: float) -> BatchAugmentation:
    return VFlip(strength=strength, p=p)


@register_augmentation(
    "crop", default_strength=0.125, help="reflect-pad then random crop; strength = pad, pixels if >= 1 else fraction"
)
def crop(strength: float, p: float) -> BatchAugmentation:
    _require(strength >= 0, "crop", "use a pad >= 0 (pixels, or a fraction below 1)", strength)
    return Crop(strength=strength, p=p)


@register_augmentation(
    "resized_crop", default_strength=0.35, help="random box resized to full size; strength = min area fraction"
)
def resized_crop(strength: float, p: float) -> BatchAugmentation:
    _require(0 < strength <= 1, "resized_crop", "use a minimum area fraction in (0, 1]", strength)
    return ResizedCrop(strength=strength, p=p)


@register_augmentation(
    "translate", default_strength=0.1, default_p=0.5, help="shift; strength = max shift, fraction of image size"
)
def translate(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength <= 1, "translate", "use a fraction of the image size in [0, 1]", strength)
    return Translate(strength=strength, p=p)


@register_augmentation("rotate", default_strength=15.0, default_p=0.5, help="rotate; strength = max degrees")
def rotate(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength <= 180, "rotate", "use a maximum angle in [0, 180] degrees", strength)
    return Rotate(strength=strength, p=p)


@register_augmentation(
    "scale", default_strength=0.75, default_p=0.5, help="zoom out (object gets smaller); strength = min scale"
)
def scale(strength: float, p: float) -> BatchAugmentation:
    _require(0 < strength <= 1, "scale", "use a minimum scale in (0, 1]", strength)
    return Scale(strength=strength, p=p)


@register_augmentation("shear", default_strength=10.0, default_p=0.5, help="shear x and y; strength = max degrees")
def shear(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength < 60, "shear", "use a maximum shear angle in [0, 60) degrees", strength)
    return Shear(strength=strength, p=p)


@register_augmentation(
    "perspective", default_strength=0.3, default_p=0.5, help="perspective warp; strength = max corner shift (0..1)"
)
def perspective(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength < 1, "perspective", "use a corner shift fraction in [0, 1)", strength)
    return Perspective(strength=strength, p=p)


@register_augmentation(
    "elastic", default_strength=0.05, default_p=0.3, help="smooth random warp; strength = max shift, image fraction"
)
def elastic(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength <= 0.5, "elastic", "use a displacement fraction in [0, 0.5]", strength)
    return Elastic(strength=strength, p=p)


@register_augmentation(
    "color", default_strength=0.3, default_p=0.8, help="brightness/contrast/saturation/hue jitter; strength = amount"
)
def color(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength <= 2, "color", "use a jitter amount in [0, 2] (0.3 is moderate)", strength)
    return ColorJitter(strength=strength, p=p)


@register_augmentation(
    "channel_shift", default_strength=0.1, default_p=0.5, help="per-channel offset; strength = max offset (0..1)"
)
def channel_shift(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength <= 1, "channel_shift", "use a maximum offset in [0, 1]", strength)
    return ChannelShift(strength=strength, p=p)


@register_augmentation("grayscale", default_strength=0.0, default_p=0.2, help="drop colour; strength unused")
def grayscale(strength: float, p: float) -> BatchAugmentation:
    return Grayscale(strength=strength, p=p)


@register_augmentation(
    "noise", default_strength=0.05, default_p=0.5, help="gaussian noise; strength = max sigma (0..1)"
)
def noise(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength <= 1, "noise", "use a maximum sigma in [0, 1] (intensities are 0..1)", strength)
    return Noise(strength=strength, p=p)


@register_augmentation("blur", default_strength=1.0, default_p=0.3, help="gaussian blur; strength = max sigma, pixels")
def blur(strength: float, p: float) -> BatchAugmentation:
    _require(0 <= strength <= 20, "blur", "use a maximum sigma in [0, 20] pixels", strength)
    return Blur(strength=strength, p=p)


@register_augmentation(
    "jpeg", default_strength=40.0, default_p=0.3, help="JPEG artefacts (CPU); strength = min quality 1..100"
)
def jpeg(strength: float, p: float) -> BatchAugmentation:
    _require(1 <= strength <= 100, "jpeg", "use a minimum JPEG quality in [1, 100]", strength)
    return Jpeg(strength=strength, p=p)


@register_augmentation(
    "erase", default_strength=0.25, default_p=0.25, help="random erasing/cutout; strength = max area fraction"
)
def erase(strength: float, p: float) -> BatchAugmentation:
    _require(0 < strength <= 1, "erase", "use a maximum area fraction in (0, 1]", strength)
    return Erase(strength=strength, p=p)


@register_augmentation("mixup", default_strength=0.2, help="batch mixer: blend pairs; strength = Beta alpha")
def mixup(strength: float, p: float) -> BatchMix:
    _require(strength > 0, "mixup", "use a Beta alpha > 0 (0.2 is common)", strength)
    return Mixup(strength=strength, p=p)


@register_augmentation(
    "cutmix", default_strength=1.0, help="batch mixer: paste boxes between pairs; strength = Beta alpha"
)
def cutmix(strength: float, p: float) -> BatchMix:
    _require(strength > 0, "cutmix", "use a Beta alpha > 0 (1.0 is common)", strength)
    return CutMix(strength=strength, p=p)
