"""Colour and texture ops: jitter, channel shift, grayscale, noise, blur, JPEG, erasing."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from honed.augment.ops.base import BatchAugmentation
from honed.augment.ops.tensors import box_mask, check_rgb, luma, rand, uniform


class ColorJitter(BatchAugmentation):
    """Brightness, contrast and saturation factors in [1 - strength, 1 + strength] and a hue rotation of up
    to strength / 4 turns, per sample. Hue turns about the grey axis in YIQ space (close to an HSV shift)."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        check_rgb(x, "color")
        b, dev, s = x.shape[0], x.device, self.strength
        lo = max(0.0, 1.0 - s)
        bright, contrast, sat = uniform(3 * b, lo, 1.0 + s, g, dev).view(3, b, 1, 1, 1).to(x.dtype)
        hue = uniform(b, -min(s / 4, 0.5), min(s / 4, 0.5), g, dev)
        x = (x * bright).clamp(0, 1)
        mean = luma(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean).clamp(0, 1)
        gray = luma(x)
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


class Brightness(BatchAugmentation):
    """Scale intensities by a per-sample factor drawn log-uniformly in [1/strength, strength] (strength >= 1):
    as likely to halve brightness as to double it. What covers a measured brightness shift between splits,
    where colour jitter would have to move contrast, saturation and hue as far to reach it."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        span = math.log(self.strength)
        factor = uniform(x.shape[0], -span, span, g, x.device).exp().view(-1, 1, 1, 1)
        return (x * factor.to(x.dtype)).clamp_(0, 1)


class ChannelShift(BatchAugmentation):
    """Add an offset in [-strength, strength] to each colour channel of each sample (a colour cast)."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, c = x.shape[:2]
        shift = uniform(b * c, -self.strength, self.strength, g, x.device).view(b, c, 1, 1)
        return (x + shift.to(x.dtype)).clamp_(0, 1)


class Grayscale(BatchAugmentation):
    """Replace colour by luma in all three channels. Strength is unused."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        check_rgb(x, "grayscale")
        return luma(x).expand_as(x).contiguous()


class Noise(BatchAugmentation):
    """Add gaussian pixel noise with a per-sample sigma in [0, strength] (image intensities are 0..1)."""

    def apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        sigma = uniform(x.shape[0], 0.0, self.strength, g, x.device).view(-1, 1, 1, 1)
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
        sigma = uniform(b, 0.1, max(self.strength, 0.1), g, x.device)
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
        check_rgb(x, "jpeg")
        lo, hi = int(self.strength), max(int(self.strength), 95)
        quality = (lo + rand((x.shape[0],), g, x.device) * (hi - lo + 1)).long().clamp_(max=hi).tolist()
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
        area = uniform(b, min(0.02, self.strength), self.strength, g, dev) * h * w
        ratio = uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), g, dev).exp()
        bh = torch.sqrt(area / ratio).clamp(max=h)
        bw = torch.sqrt(area * ratio).clamp(max=w)
        top = rand((b,), g, dev) * (h - bh)
        left = rand((b,), g, dev) * (w - bw)
        mask = box_mask(h, w, top.round(), left.round(), (top + bh).round(), (left + bw).round())
        fill = torch.rand(x.shape, generator=g, device=dev, dtype=x.dtype)
        return torch.where(mask, fill, x)
