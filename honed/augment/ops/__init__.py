"""Batched augmentations: each draws its own random parameters per sample and runs on the batch's device.

Input is a float batch ``[B, C, H, W]`` in ``[0, 1]`` (the training loop converts uint8 and moves it to the
device first); output has the same shape, dtype and range. Geometric ops build one matrix (or sampling grid)
per sample and warp the whole batch with one ``grid_sample``; colour ops scale per-sample factors; blur uses
one grouped convolution with a kernel per sample. Only ``jpeg`` leaves the device (a Pillow encode per sample).

``strength`` means something per op (documented on each class and in the registry help); every op also takes
``p``, the probability that a sample is augmented at all.

Layout: ``base`` (the two interfaces), ``geometric``, ``photometric``, ``mixing``, ``policies`` (the ops;
``policies`` wraps torchvision v2's RandAugment and TrivialAugmentWide, a torchvision call per sample),
``tensors`` (what they share), ``builtins`` (their registrations by name, made on import).
"""

from honed.augment.ops import builtins  # noqa: F401  (registers the built-in augmentations)
from honed.augment.ops.base import BatchAugmentation, BatchMix
from honed.augment.ops.geometric import (
    Crop, Elastic, HFlip, Perspective, ResizedCrop, Rotate, Scale, Shear, Translate, VFlip,
)
from honed.augment.ops.mixing import CutMix, Mixup
from honed.augment.ops.photometric import Blur, ChannelShift, ColorJitter, Erase, Grayscale, Jpeg, Noise
from honed.augment.ops.policies import RandAugment, TrivialAugment

__all__ = [
    "BatchAugmentation", "BatchMix",
    "HFlip", "VFlip", "Crop", "ResizedCrop", "Translate", "Rotate", "Scale", "Shear", "Perspective", "Elastic",
    "ColorJitter", "ChannelShift", "Grayscale", "Noise", "Blur", "Jpeg", "Erase",
    "RandAugment", "TrivialAugment",
    "Mixup", "CutMix",
]
