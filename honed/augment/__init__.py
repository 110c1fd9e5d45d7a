"""Batched, on-device training augmentations: a registry of ops, policies that chain them, and previews.

    from honed.augment import parse_policy
    augment = parse_policy("hflip,rotate:15,color:0.3@0.5,mixup:0.2").build()
    x = augment(x, generator)            # float [B, 3, H, W] in [0, 1], on any device
    x, y = augment.mix(x, y, generator)  # batch-level mixers with one-hot/soft labels
"""

from honed.augment.ops import BatchAugmentation, BatchMix  # noqa: F401  (importing ops registers the built-ins)
from honed.augment.policy import Augmenter, Policy, PolicyItem, parse_policy
from honed.augment.preview import preview_grid
from honed.augment.registry import (
    AUGMENTATIONS,
    AugmentationSpec,
    create_augmentation,
    get_augmentation_spec,
    list_augmentations,
    register_augmentation,
)

__all__ = [
    "AUGMENTATIONS",
    "AugmentationSpec",
    "Augmenter",
    "BatchAugmentation",
    "BatchMix",
    "Policy",
    "PolicyItem",
    "create_augmentation",
    "get_augmentation_spec",
    "list_augmentations",
    "parse_policy",
    "preview_grid",
    "register_augmentation",
]
