"""The built-in augmentations registered by name: defaults, what strength means, the class each builds."""

from __future__ import annotations

from honed.augment.ops.base import BatchAugmentation, BatchMix
from honed.augment.ops.geometric import (
    Crop, Elastic, HFlip, Perspective, QuarterTurn, ResizedCrop, Rotate, Scale, Shear, Translate, VFlip,
)
from honed.augment.ops.mixing import CutMix, Mixup
from honed.augment.ops.photometric import (
    Blur, Brightness, ChannelShift, ColorJitter, Erase, Grayscale, Jpeg, Noise,
)
from honed.augment.ops.policies import MAGNITUDE_BINS, RandAugment, TrivialAugment
from honed.augment.ops.tensors import require_strength
from honed.augment.registry import register_augmentation


@register_augmentation("hflip", default_strength=0.0, default_p=0.5, help="mirror left-right; strength unused")
def hflip(strength: float, p: float) -> BatchAugmentation:
    return HFlip(strength=strength, p=p)


@register_augmentation("vflip", default_strength=0.0, default_p=0.5, help="mirror top-bottom; strength unused")
def vflip(strength: float, p: float) -> BatchAugmentation:
    return VFlip(strength=strength, p=p)


@register_augmentation(
    "quarter_turn", default_strength=0.0, default_p=0.5, help="turn by 90, 180 or 270 degrees; strength unused"
)
def quarter_turn(strength: float, p: float) -> BatchAugmentation:
    return QuarterTurn(strength=strength, p=p)


@register_augmentation(
    "crop", default_strength=0.125, help="reflect-pad then random crop; strength = pad, pixels if >= 1 else fraction"
)
def crop(strength: float, p: float) -> BatchAugmentation:
    require_strength(strength >= 0, "crop", "use a pad >= 0 (pixels, or a fraction below 1)", strength)
    return Crop(strength=strength, p=p)


@register_augmentation(
    "resized_crop", default_strength=0.35, help="random box resized to full size; strength = min area fraction"
)
def resized_crop(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 < strength <= 1, "resized_crop", "use a minimum area fraction in (0, 1]", strength)
    return ResizedCrop(strength=strength, p=p)


@register_augmentation(
    "translate", default_strength=0.1, default_p=0.5, help="shift; strength = max shift, fraction of image size"
)
def translate(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength <= 1, "translate", "use a fraction of the image size in [0, 1]", strength)
    return Translate(strength=strength, p=p)


@register_augmentation("rotate", default_strength=15.0, default_p=0.5, help="rotate; strength = max degrees")
def rotate(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength <= 180, "rotate", "use a maximum angle in [0, 180] degrees", strength)
    return Rotate(strength=strength, p=p)


@register_augmentation(
    "scale", default_strength=0.75, default_p=0.5, help="zoom out (object gets smaller); strength = min scale"
)
def scale(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 < strength <= 1, "scale", "use a minimum scale in (0, 1]", strength)
    return Scale(strength=strength, p=p)


@register_augmentation("shear", default_strength=10.0, default_p=0.5, help="shear x and y; strength = max degrees")
def shear(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength < 60, "shear", "use a maximum shear angle in [0, 60) degrees", strength)
    return Shear(strength=strength, p=p)


@register_augmentation(
    "perspective", default_strength=0.3, default_p=0.5, help="perspective warp; strength = max corner shift (0..1)"
)
def perspective(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength < 1, "perspective", "use a corner shift fraction in [0, 1)", strength)
    return Perspective(strength=strength, p=p)


@register_augmentation(
    "elastic", default_strength=0.05, default_p=0.3, help="smooth random warp; strength = max shift, image fraction"
)
def elastic(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength <= 0.5, "elastic", "use a displacement fraction in [0, 0.5]", strength)
    return Elastic(strength=strength, p=p)


@register_augmentation(
    "color", default_strength=0.3, default_p=0.8, help="brightness/contrast/saturation/hue jitter; strength = amount"
)
def color(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength <= 2, "color", "use a jitter amount in [0, 2] (0.3 is moderate)", strength)
    return ColorJitter(strength=strength, p=p)


@register_augmentation(
    "brightness", default_strength=2.0, default_p=0.5,
    help="brightness only, a factor log-uniform in [1/strength, strength]; strength >= 1 (2: halve to double)"
)
def brightness(strength: float, p: float) -> BatchAugmentation:
    require_strength(1 <= strength <= 16, "brightness", "use a largest factor in [1, 16] (2 halves to doubles)",
                     strength)
    return Brightness(strength=strength, p=p)


@register_augmentation(
    "channel_shift", default_strength=0.1, default_p=0.5, help="per-channel offset; strength = max offset (0..1)"
)
def channel_shift(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength <= 1, "channel_shift", "use a maximum offset in [0, 1]", strength)
    return ChannelShift(strength=strength, p=p)


@register_augmentation("grayscale", default_strength=0.0, default_p=0.2, help="drop colour; strength unused")
def grayscale(strength: float, p: float) -> BatchAugmentation:
    return Grayscale(strength=strength, p=p)


@register_augmentation(
    "noise", default_strength=0.05, default_p=0.5, help="gaussian noise; strength = max sigma (0..1)"
)
def noise(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength <= 1, "noise", "use a maximum sigma in [0, 1] (intensities are 0..1)", strength)
    return Noise(strength=strength, p=p)


@register_augmentation("blur", default_strength=1.0, default_p=0.3, help="gaussian blur; strength = max sigma, pixels")
def blur(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 <= strength <= 20, "blur", "use a maximum sigma in [0, 20] pixels", strength)
    return Blur(strength=strength, p=p)


@register_augmentation(
    "jpeg", default_strength=40.0, default_p=0.3, help="JPEG artefacts (CPU); strength = min quality 1..100"
)
def jpeg(strength: float, p: float) -> BatchAugmentation:
    require_strength(1 <= strength <= 100, "jpeg", "use a minimum JPEG quality in [1, 100]", strength)
    return Jpeg(strength=strength, p=p)


@register_augmentation(
    "erase", default_strength=0.25, default_p=0.25, help="random erasing/cutout; strength = max area fraction"
)
def erase(strength: float, p: float) -> BatchAugmentation:
    require_strength(0 < strength <= 1, "erase", "use a maximum area fraction in (0, 1]", strength)
    return Erase(strength=strength, p=p)


@register_augmentation(
    "randaugment", default_strength=9.0,
    help="RandAugment (torchvision v2), 2 ops per sample; strength = magnitude 0..30 (9: the paper's ImageNet)",
)
def randaugment(strength: float, p: float) -> BatchAugmentation:
    top = MAGNITUDE_BINS - 1
    require_strength(0 <= strength <= top and strength == int(strength), "randaugment",
                     f"use a whole magnitude in [0, {top}] (9 is the paper's ImageNet setting)", strength)
    return RandAugment(strength=strength, p=p)


@register_augmentation(
    "trivialaugment", default_strength=0.0,
    help="TrivialAugmentWide (torchvision v2): one op at a random magnitude per sample; strength unused",
)
def trivialaugment(strength: float, p: float) -> BatchAugmentation:
    return TrivialAugment(strength=strength, p=p)


@register_augmentation("mixup", default_strength=0.2, help="batch mixer: blend pairs; strength = Beta alpha")
def mixup(strength: float, p: float) -> BatchMix:
    require_strength(strength > 0, "mixup", "use a Beta alpha > 0 (0.2 is common)", strength)
    return Mixup(strength=strength, p=p)


@register_augmentation(
    "cutmix", default_strength=1.0, help="batch mixer: paste boxes between pairs; strength = Beta alpha"
)
def cutmix(strength: float, p: float) -> BatchMix:
    require_strength(strength > 0, "cutmix", "use a Beta alpha > 0 (1.0 is common)", strength)
    return CutMix(strength=strength, p=p)
