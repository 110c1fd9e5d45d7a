"""The factors error analysis probes: for each, a controlled transformation at fixed strengths, a cheap
measurement that tells how far an image lies along the factor, and the augmentation that addresses it.

Transformations are deterministic given a seeded generator (which draws only signs, directions and noise)
and fill uncovered areas with each image's own border colour, so that no black corner becomes a cue of
its own. Geometric warps reuse :mod:`honed.augment`'s ops at fixed parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from honed.analyze import image_measures as measures
from honed.augment.ops import Rotate, Scale
from honed.errors import HonedError

Transform = Callable[[Tensor, float, torch.Generator], Tensor]
Measure = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Factor:
    """One factor of variation: how to probe it, how to measure it, what augmentation fixes it."""

    name: str
    group: str  # the recommendation it feeds: scale, rotation, colour, blur, noise, position, flip
    slice: str  # the images at its extreme, in words
    unit: str  # of the probe parameter
    identity: float  # parameter value that leaves an image unchanged
    strengths: tuple[float, ...]  # probe parameter values, increasingly strong
    transform: Transform  # (float batch in [0, 1], parameter, generator) -> transformed batch
    measure: Measure | None  # per-image scalar, or histogram when ``histogram``; None: not measurable
    direction: int  # +1: large values are unusual; -1: small values are; 0: far from training either way
    recommend: Callable[[float], str]  # matched parameter -> policy fragment
    histogram: bool = False  # measure returns [N, bins] 360-degree histograms, compared by circular offset

    @property
    def parameters(self) -> tuple[float, ...]:
        """The identity followed by the probe strengths: the conditions along the probe curve."""
        return (self.identity, *self.strengths)


# --- transformations ----------------------------------------------------------------------------------------


def _signs(n: int, g: torch.Generator, device: torch.device) -> Tensor:
    return (torch.randint(0, 2, (n,), generator=g) * 2 - 1).to(device=device, dtype=torch.float32)


def _on_background(x: Tensor, warp: Callable[[Tensor], Tensor]) -> Tensor:
    """Warp with the uncovered area filled by each image's border colour instead of black."""
    background = measures.border_colour(x)[:, :, None, None]
    return (warp(x - background) + background).clamp_(0, 1)


def rotate(x: Tensor, degrees: float, g: torch.Generator) -> Tensor:
    angles = degrees * _signs(x.shape[0], g, x.device)
    return _on_background(x, lambda z: Rotate(strength=0.0, p=1.0).warp(z, angles.to(z.dtype), clamp=False))


def shrink(x: Tensor, factor: float, g: torch.Generator) -> Tensor:
    """The scale augmentation's own zoom-out at a fixed factor (it surrounds the image with its border colour)."""
    factors = torch.full((x.shape[0],), factor, dtype=x.dtype, device=x.device)
    return Scale(strength=factor, p=1.0).warp(x, factors)


def translate(x: Tensor, fraction: float, g: torch.Generator) -> Tensor:
    n = x.shape[0]
    angle = torch.rand(n, generator=g).to(x.device) * 2 * math.pi
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2 * fraction * angle.cos()
    theta[:, 1, 2] = -2 * fraction * angle.sin()

    def warp(z: Tensor) -> Tensor:
        grid = F.affine_grid(theta, list(z.shape), align_corners=False)
        return F.grid_sample(z, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return _on_background(x, warp)


def hflip(x: Tensor, amount: float, g: torch.Generator) -> Tensor:
    return x.flip(-1) if amount else x


def blur(x: Tensor, sigma: float, g: torch.Generator) -> Tensor:
    if sigma <= 0:
        return x
    b, c, h, w = x.shape
    radius = max(1, min(math.ceil(3 * sigma), h - 1, w - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(c, 1)
    out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=c)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=c)


def add_noise(x: Tensor, sigma: float, g: torch.Generator) -> Tensor:
    return (x + sigma * torch.randn(x.shape, generator=g).to(x.device, x.dtype)).clamp_(0, 1)


def shift_hue(x: Tensor, degrees: float, g: torch.Generator) -> Tensor:
    """Rotate chroma about the grey axis (YIQ), by +-degrees per image."""
    angle = torch.deg2rad(degrees * _signs(x.shape[0], g, x.device))
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device)
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                            torch.stack([zero, sin, cos], 1)], 1)
    matrix = (torch.linalg.inv(yiq) @ rotation @ yiq).to(x.dtype)
    return torch.einsum("bij,bjhw->bihw", matrix, x).clamp_(0, 1)


def desaturate(x: Tensor, amount: float, g: torch.Generator) -> Tensor:
    grey = measures.luma(x)[:, None]
    return (grey + (x - grey) * (1 - amount)).clamp_(0, 1)


def change_brightness(x: Tensor, amount: float, g: torch.Generator) -> Tensor:
    """Half the images (drawn) darker by ``amount``, the others that much closer to white."""
    darker = _signs(x.shape[0], g, x.device).view(-1, 1, 1, 1) < 0
    return torch.where(darker, x * (1 - amount), x + amount * (1 - x))


def reduce_contrast(x: Tensor, amount: float, g: torch.Generator) -> Tensor:
    mean = measures.luma(x).flatten(1).mean(1).view(-1, 1, 1, 1)
    return (mean + (x - mean) * (1 - amount)).clamp_(0, 1)


# --- recommendations: the matched parameter (75th percentile of validation images) -> a policy fragment ------

COVER = 1.25  # augment somewhat beyond the shift measured, so most validation images fall inside the range


def _num(value: float) -> str:
    return f"{value:.3g}"


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _scale_policy(factor: float) -> str:
    return f"scale:{_num(_clip(factor / COVER, 0.2, 0.9))}@0.8"  # zoom out to below the matched size


def _rotate_policy(degrees: float) -> str:
    return f"rotate:{_num(_clip(5 * math.ceil(COVER * degrees / 5), 10, 180))}@0.8"


def _translate_policy(fraction: float) -> str:
    return f"translate:{_num(_clip(COVER * fraction, 0.05, 0.5))}@0.5"


def _colour_policy(amount: float) -> str:
    """Colour jitter moves brightness, contrast and saturation by up to ``strength`` (hue by strength/4 turns)."""
    return f"color:{_num(_clip(COVER * amount, 0.3, 1.0))}@0.8"


def brightness_policy(ratio: float) -> str:
    """Brightness alone, reaching a little beyond ``ratio`` (validation / training brightness) either way.
    Colour jitter would have to move contrast, saturation and hue as far to reach a strong darkening: on CIFAR
    validation images darkened 4x, colour jitter (0.94) won back 61% of the loss and brightness (4x) 71%."""
    reach = max(ratio, 1 / max(ratio, 1e-3))
    return f"brightness:{_num(_clip(COVER * reach, 1.25, 16.0))}@0.5"


def _brightness_policy(amount: float) -> str:
    """Images darker by ``amount`` of their range: a brightness ratio of 1 - amount."""
    return brightness_policy(max(1 - amount, 1 / 16))


def _hue_policy(degrees: float) -> str:
    return _colour_policy(4 * degrees / 360)


def blur_policy(sigma: float) -> str:
    """Blur alone, for a blur measured between the splits: blurring smooths noise away, so noise augmentation
    moves the training images away from such validation images (ants and bees photos blurred by 5.6 px:
    `blur:6@0.5` won back 70% of the loss, with `noise:0.03@0.3` added 41%)."""
    return f"blur:{_num(_clip(COVER * sigma, 0.5, 8.0))}@0.5"


def _blur_policy(sigma: float) -> str:
    return f"{blur_policy(sigma)},noise:0.03@0.3"  # sensitivity to blur: blurry images often come with noise


def _noise_policy(sigma: float) -> str:
    return f"noise:{_num(_clip(COVER * sigma, 0.02, 0.5))}@0.5,blur:1@0.3"


FACTORS: tuple[Factor, ...] = (
    Factor("size", "scale", "small objects", "scale factor", 1.0, (0.75, 0.5, 0.3), shrink,
           measures.object_size, -1, _scale_policy),
    Factor("rotation", "rotation", "rotated objects", "degrees", 0.0, (15.0, 30.0, 45.0, 90.0), rotate,
           measures.orientation_histogram, +1, _rotate_policy, histogram=True),
    Factor("translation", "position", "off-centre objects", "fraction of the side", 0.0, (0.1, 0.2, 0.3),
           translate, measures.object_offset, +1, _translate_policy),
    Factor("flip", "flip", "mirrored images", "", 0.0, (1.0,), hflip, None, +1, lambda m: "hflip"),
    Factor("hue", "colour", "unusual colours", "degrees", 0.0, (30.0, 90.0, 180.0), shift_hue,
           measures.hue_histogram, +1, _hue_policy, histogram=True),
    Factor("saturation", "colour", "washed-out colours", "share removed", 0.0, (0.33, 0.67, 1.0), desaturate,
           measures.saturation, -1, _colour_policy),
    Factor("brightness", "colour", "dark or bright images", "share of the range", 0.0, (0.2, 0.4, 0.6),
           change_brightness, measures.brightness, 0, _brightness_policy),
    Factor("contrast", "colour", "low-contrast images", "share removed", 0.0, (0.3, 0.5, 0.7), reduce_contrast,
           measures.contrast, -1, _colour_policy),
    Factor("blur", "blur", "blurry images", "sigma, pixels", 0.0, (0.6, 1.2, 2.0), blur, measures.sharpness, -1,
           _blur_policy),
    Factor("noise", "noise", "noisy images", "sigma (0..1)", 0.0, (0.05, 0.1, 0.2), add_noise,
           measures.noise_level, +1, _noise_policy),
)


def factor_names() -> list[str]:
    return [f.name for f in FACTORS]


def select_factors(names: Sequence[str] | None) -> tuple[Factor, ...]:
    """The factors named (all when ``None``), in the canonical order; unknown names list the valid ones."""
    if names is None:
        return FACTORS
    unknown = sorted(set(names) - set(factor_names()))
    if unknown:
        raise HonedError(f"unknown probe(s) {unknown}: choose from {', '.join(factor_names())}")
    return tuple(f for f in FACTORS if f.name in set(names))
