"""Cheap per-image measurements, batched on tensors: how large, sharp, noisy, bright, colourful and
oriented each image is, so validation images can be compared with training images factor by factor.

Every function takes a float batch ``[N, 3, H, W]`` in [0, 1] and returns one number per image (or one
histogram per image for orientation and hue). They are proxies chosen to be stable rather than exact:

- object size: the square root of the share of pixels that differ clearly from the border colour (the
  background estimate), so shrinking an object by ``s`` multiplies it by about ``s``;
- sharpness: mean |Laplacian| over mean |gradient| of the luma. The variance of the Laplacian is the usual
  blur measure, but it also falls with contrast and with the amount of edges; this ratio does not;
- fineness: mean |gradient| over the standard deviation of the luma, which keeps falling as the blur grows
  (the Laplacian ratio levels off at uint8 precision beyond a blur of about 3 px), so it sets a blur's strength;
- noise: Immerkaer's estimate, made robust with a median (sigma in 0..1 intensity units);
- brightness and contrast: the mid-range and the spread of luma between its 1st and 99th percentiles (the
  image's mean and standard deviation would change with object size and blur);
- saturation: the mean HSV saturation of the object pixels;
- offset: the distance of the object's centroid from the image centre, as a fraction of the side;
- orientation and hue: magnitude-weighted histograms of gradient direction (0..360 degrees) and of hue
  (weighted by chroma); :func:`circular_offset` estimates by how many degrees an image is turned (rotated,
  or hue-shifted) away from its nearest training look-alikes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from honed.augment.ops.tensors import border_colour

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as honed.augment
HIST_BINS = 36  # 10 degrees per bin (orientation and hue), refined between bins when turning histograms
SYMMETRY_TIE_BREAK = 0.02  # symmetric shapes match at several turns (a square every 90 degrees): take the least
MIN_ALIGNMENT_GAIN = 0.25  # a histogram must come this much closer to training's when turned to count as turned
_EPS = 1e-6


def measure_images(measure, images: Tensor, *, chunk: int = 256) -> Tensor:
    """Apply a measurement to uint8 images ``[N, 3, S, S]`` a chunk at a time (floats only per chunk)."""
    return torch.cat([measure(images[i:i + chunk].float() / 255) for i in range(0, len(images), chunk)])


def luma(x: Tensor) -> Tensor:
    """``[N, H, W]`` luma of an RGB batch."""
    return LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2]


def object_mask(x: Tensor) -> Tensor:
    """``[N, H, W]`` pixels that differ clearly from the background: above half the 95th-percentile distance."""
    distance = (x - border_colour(x)[:, :, None, None]).norm(dim=1) / math.sqrt(3)
    high = row_quantile(distance.flatten(1), 0.95).clamp(min=0.1)
    return distance > 0.5 * high[:, None, None]


def object_size(x: Tensor) -> Tensor:
    """Linear object size, 0..1: sqrt of the share of object pixels."""
    return object_mask(x).flatten(1).float().mean(1).sqrt()


def object_offset(x: Tensor) -> Tensor:
    """Distance of the object's centroid from the image centre, as a fraction of the image side."""
    mask = object_mask(x).float()
    n, h, w = mask.shape
    total = mask.flatten(1).sum(1).clamp(min=1.0)
    rows = torch.arange(h, dtype=x.dtype, device=x.device)[None, :, None]
    cols = torch.arange(w, dtype=x.dtype, device=x.device)[None, None, :]
    cy = (mask * rows).flatten(1).sum(1) / total - (h - 1) / 2
    cx = (mask * cols).flatten(1).sum(1) / total - (w - 1) / 2
    return torch.sqrt((cy / h) ** 2 + (cx / w) ** 2)


def sharpness(x: Tensor) -> Tensor:
    """Mean |Laplacian| / mean |gradient| of luma: falls with blur, independent of contrast and edge count."""
    y = luma(x)[:, None]
    gx, gy = _gradients(y)
    lap = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), _kernel([[0, 1, 0], [1, -4, 1], [0, 1, 0]], y))
    return lap.abs().flatten(1).mean(1) / (gx.abs() + gy.abs()).flatten(1).mean(1).clamp(min=_EPS)


def fineness(x: Tensor) -> Tensor:
    """Mean |gradient| of the luma over its standard deviation: how fine the detail is for the contrast."""
    y = luma(x)
    gx = (y[..., :, 1:] - y[..., :, :-1]).abs().flatten(1).mean(1)
    gy = (y[..., 1:, :] - y[..., :-1, :]).abs().flatten(1).mean(1)
    return (gx + gy) / y.flatten(1).std(1).clamp(min=1e-3)


def noise_level(x: Tensor) -> Tensor:
    """Gaussian noise sigma (0..1 units) by Immerkaer's mask, with a median so edges do not count."""
    y = luma(x)[:, None]
    response = F.conv2d(y, _kernel([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], y)).abs()
    return response.flatten(1).median(1).values / (6 * 0.6745)


def brightness(x: Tensor) -> Tensor:
    """Mid-range of luma (between its 1st and 99th percentiles): unlike the mean, independent of object size."""
    low, high = _luma_range(x)
    return (low + high) / 2


def contrast(x: Tensor) -> Tensor:
    """Spread of luma between its 1st and 99th percentiles: unlike the standard deviation, independent of object
    size and barely touched by blur, which softens edges but keeps the extremes of an object and background."""
    low, high = _luma_range(x)
    return high - low


def _luma_range(x: Tensor) -> tuple[Tensor, Tensor]:
    y = luma(x).flatten(1)
    return row_quantile(y, 0.01), row_quantile(y, 0.99)


def row_quantile(values: Tensor, q: float) -> Tensor:
    """The ``q`` quantile of each row (nearest rank): ``Tensor.quantile`` refuses inputs over 16M elements."""
    k = min(max(1, int(round(q * values.shape[1]))), values.shape[1])
    return values.kthvalue(k, dim=1).values


def saturation(x: Tensor) -> Tensor:
    """Mean HSV saturation of the object pixels (all pixels when no object stands out)."""
    high, low = x.max(1).values, x.min(1).values
    sat = (high - low) / high.clamp(min=_EPS)
    mask = object_mask(x).float()
    use = torch.where(mask.flatten(1).sum(1, keepdim=True) > 0, mask.flatten(1), torch.ones_like(sat.flatten(1)))
    return (sat.flatten(1) * use).sum(1) / use.sum(1)


def orientation_histogram(x: Tensor) -> Tensor:
    """``[N, HIST_BINS]`` gradient directions over 0..360 degrees, weighted by magnitude, summing to 1.

    Directions are not folded to 0..180: an upside-down triangle differs from an upright one."""
    gx, gy = _gradients(luma(x)[:, None])
    angle = torch.atan2(gy, gx).remainder(2 * math.pi) / (2 * math.pi)  # 0..1 over 360 degrees
    return _histogram(angle.flatten(1), torch.sqrt(gx**2 + gy**2).flatten(1))


def hue_histogram(x: Tensor) -> Tensor:
    """``[N, HIST_BINS]`` hues (0..360 degrees) weighted by chroma, summing to 1 (grey images: uniform)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    high, low = x.max(1).values, x.min(1).values
    chroma = high - low
    safe = chroma.clamp(min=_EPS)
    hue = torch.where(high == r, ((g - b) / safe).remainder(6),
                      torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6  # 0..1
    return _histogram(hue.flatten(1), chroma.flatten(1))


def circular_offset(features: Tensor, reference: Tensor, *, exclude_self: bool = False, k: int = 3,
                    min_gain: float = MIN_ALIGNMENT_GAIN) -> Tensor:
    """Degrees (0..180) by which each 360-degree histogram must be turned to look like the reference ones.

    The distance to the reference is the mean L1 distance to the ``k`` nearest reference histograms. Each
    histogram is shifted circularly to every bin (refined between bins by a parabola through the minimum);
    the best shift is the estimate, kept only when it brings the histogram at least ``min_gain`` (a share)
    closer to the reference than no shift does: an image whose histogram matches nothing at any shift (a
    circle, a grey object) counts as unturned rather than as turned by noise. With ``exclude_self`` the i-th
    reference histogram is left out for the i-th feature (features of the reference images themselves).
    """
    bins = features.shape[1]
    distances = torch.stack([_knn_distance(features.roll(shift, dims=1), reference, exclude_self, k)
                             for shift in range(bins)], dim=1).double()
    turn = torch.arange(bins, dtype=distances.dtype, device=distances.device)
    turn = torch.minimum(turn, bins - turn) / (bins / 2)  # 0..1: how far each shift turns, either way
    best = (distances + SYMMETRY_TIE_BREAK * distances[:, :1] * turn).argmin(dim=1)  # smallest of equal turns
    left = distances.gather(1, ((best - 1) % bins)[:, None])[:, 0]
    centre = distances.gather(1, best[:, None])[:, 0]
    right = distances.gather(1, ((best + 1) % bins)[:, None])[:, 0]
    curvature = left - 2 * centre + right
    refine = torch.where(curvature > 0, 0.5 * (left - right) / curvature.clamp(min=1e-12),
                         torch.zeros_like(curvature)).clamp(-0.5, 0.5)
    shift = (best.double() + refine) * 360.0 / bins
    degrees = torch.minimum(shift.remainder(360.0), 360.0 - shift.remainder(360.0))
    gain = (distances[:, 0] - centre) / distances[:, 0].clamp(min=1e-12)
    return torch.where(gain >= min_gain, degrees, torch.zeros_like(degrees)).to(features.dtype)


def _knn_distance(features: Tensor, reference: Tensor, exclude_self: bool, k: int) -> Tensor:
    d = torch.cdist(features[None].double(), reference[None].double(), p=1)[0]
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    k = max(1, min(k, reference.shape[0] - int(exclude_self)))
    return d.topk(k, dim=1, largest=False).values.mean(1).to(features.dtype)


def _histogram(position: Tensor, weight: Tensor) -> Tensor:
    """Per-row weighted histogram of ``position`` in [0, 1) with linear interpolation between bins."""
    n = position.shape[0]
    scaled = position * HIST_BINS - 0.5
    low = scaled.floor()
    frac = scaled - low
    low = low.long().remainder(HIST_BINS)
    high = (low + 1).remainder(HIST_BINS)
    hist = torch.zeros(n, HIST_BINS, dtype=weight.dtype, device=weight.device)
    hist.scatter_add_(1, low, weight * (1 - frac))
    hist.scatter_add_(1, high, weight * frac)
    total = hist.sum(1, keepdim=True)
    return torch.where(total > _EPS, hist / total.clamp(min=_EPS), torch.full_like(hist, 1 / HIST_BINS))


def _gradients(y: Tensor) -> tuple[Tensor, Tensor]:
    """Sobel gradients of a ``[N, 1, H, W]`` batch, replicate-padded."""
    padded = F.pad(y, (1, 1, 1, 1), mode="replicate")
    sobel = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    gx = F.conv2d(padded, _kernel(sobel, y))
    gy = F.conv2d(padded, _kernel([list(r) for r in zip(*sobel)], y))
    return gx, gy


def _kernel(values: list[list[float]], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)[None, None]
