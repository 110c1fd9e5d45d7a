"""The workflow's default image size, from the images' own size: small images are upscaled only as far as it
pays, and photos with pixels to spare are shown to pretrained weights a little larger than their input size.

A pretrained model's input size (224 px for most ImageNet models) is the default of ``honed train``. Two
rules, both from ``benchmarks/results_image_size.md`` (tf_efficientnet_lite0, probe and head):

- Images far smaller than that (CIFAR's 32 px) would be upscaled 7x per side, 49x the compute of their own
  size: train at ``UPSCALE`` times the median shorter side, rounded up to a multiple of ``MULTIPLE_OF`` and
  never above the model's size.
- Pretrained weights learned from random crops, in which objects look larger than in a whole photo resized
  to the input size (the train-test resolution discrepancy, Touvron et al. 2019, "FixRes"): when the
  photos' median side reaches ``FEATURE_SCALE`` times the model's size, they are shown at that size.

Models whose input size is fixed (ViTs and the like) keep it.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from PIL import Image

from honed.data.manifest import Manifest
from honed.models.backbones import model_input_size

UPSCALE = 4  # x the median image side. CIFAR-10 (32 px) on tf_efficientnet_lite0, probe, 200 test images:
# 1x 33.5%, 2x 51.0%, 4x 67.5% (44 CPU s), 224 px 71.5% (102 CPU s): 4x keeps all but 4 points (about one
# standard error) at 43% of the CPU time; 2x loses 16 points (benchmarks/results_image_size.md)
MULTIPLE_OF = 32  # the total stride of most convolutional backbones: no ragged last feature map
FEATURE_SCALE = 9 / 7  # 224 -> 288 px. ants/bees photos (median side 369 px), probe, 10 resplits of 153 test
# photos: 288 px beat 224 px on all 10, +1.44 +- 0.32 points (se), for 1.65x the compute; 256 px +0.39, 320 px
# +1.18. Flowers (median side 240 px, so upscaled to reach 288): -0.01 +- 0.23, no gain: only photos that
# have the pixels get the larger size (benchmarks/results_image_size.md, benchmarks/bench_photo_size.py)
SAMPLED = 256  # image headers read to measure the median side (headers only, no pixels decoded)


def default_image_size(manifest: Manifest, model_name: str, *, pretrained: bool = False) -> tuple[int, str]:
    """``(size, reason)``: the training image size for ``manifest``'s images on ``model_name`` (with its
    ``pretrained`` weights or not), and why."""
    model_size, fixed = model_input_size(model_name)
    if fixed:
        return model_size, f"{model_name} takes a fixed input of {model_size} px"
    side = median_side(_sample(manifest.split("train")["path"] if not manifest.in_memory else []))
    if side is None:
        return model_size, f"the model's input size, {model_size} px: no image size could be read"
    larger = MULTIPLE_OF * round(FEATURE_SCALE * model_size / MULTIPLE_OF)
    if pretrained and side >= larger:
        return larger, (f"{larger} px, not the model's {model_size}: the photos (median side {side} px) have the "
                        f"pixels, and pretrained weights see objects at the size of their training crops; on "
                        f"ants/bees photos the probe gained 1.4 points at {larger} px for "
                        f"{(larger / model_size) ** 2:.2f}x the compute (benchmarks/results_image_size.md)")
    size = min(model_size, max(MULTIPLE_OF, MULTIPLE_OF * math.ceil(UPSCALE * side / MULTIPLE_OF)))
    if size >= model_size:
        return model_size, (f"the model's input size, {model_size} px: the images (median side {side} px) are "
                            f"within {UPSCALE}x of it" + (f"; {larger} px would only upscale them" if pretrained else ""))
    return size, (f"{size} px, {UPSCALE}x the images' median side of {side} px, not the model's {model_size} px: "
                  f"{(model_size / size) ** 2:.1f}x less compute per image; on CIFAR photos 4x kept 67.5% of "
                  "the 71.5% test accuracy of 224 px at 43% of its CPU time (benchmarks/results_image_size.md)")


def median_side(paths: Iterable[str]) -> int | None:
    """The median shorter side of the images at ``paths`` (from their headers); None when none is readable."""
    sides = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except (OSError, ValueError):
            continue
    return int(np.median(sides)) if sides else None


def _sample(paths) -> list[str]:
    paths = list(paths)
    if len(paths) <= SAMPLED:
        return paths
    picks = np.random.default_rng(0).choice(len(paths), SAMPLED, replace=False)
    return [paths[i] for i in sorted(picks)]
