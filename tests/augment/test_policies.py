"""The photo recipe's augmentations (random resized crops, torchvision v2's RandAugment / TrivialAugmentWide) and the
brightness-only op that covers a measured brightness shift."""

from __future__ import annotations

import math

import pytest
import torch

from honed.augment import create_augmentation, get_augmentation_spec, list_augmentations, parse_policy
from honed.augment.ops import RandAugment, ResizedCrop, TrivialAugment
from honed.errors import HonedError

POLICIES = ["randaugment", "trivialaugment"]


def _photos(batch: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Textured colour images, each different: a gradient plus noise."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                        torch.full((size, size), 0.5)])
    return (0.7 * base + 0.3 * torch.rand(batch, 3, size, size, generator=g)).clamp(0, 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_policies_are_registered_with_their_defaults():
    assert {"randaugment", "trivialaugment", "resized_crop"} <= set(list_augmentations())
    assert get_augmentation_spec("randaugment").default_strength == 9
    assert "torchvision" in get_augmentation_spec("trivialaugment").help
    assert isinstance(create_augmentation("randaugment"), RandAugment)
    assert isinstance(create_augmentation("trivialaugment"), TrivialAugment)
    assert create_augmentation("randaugment").policy().num_ops == 2


@pytest.mark.parametrize("strength", [31.0, -1.0, 4.5])
def test_randaugment_magnitude_is_a_whole_bin(strength):
    with pytest.raises(HonedError, match="randaugment.*magnitude"):
        create_augmentation("randaugment", strength)


@pytest.mark.parametrize("name", POLICIES)
def test_policies_keep_shape_dtype_range_and_reproduce_from_the_generator(name):
    x = _photos()
    op = create_augmentation(name, p=1.0)
    out = op(x, _gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, op(x, _gen(1)))
    assert not torch.equal(out, op(x, _gen(2)))
    changed = [not torch.allclose(out[i], x[i], atol=1e-3) for i in range(len(x))]
    assert sum(changed) >= len(x) // 2


@pytest.mark.parametrize("name", POLICIES)
def test_policies_draw_per_sample_and_leave_the_global_generator_alone(name):
    x = _photos(batch=1).expand(12, -1, -1, -1).contiguous()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    out = create_augmentation(name, p=1.0)(x, _gen(3))
    assert torch.equal(torch.rand(3), expected), "the caller's global random state moved"
    distinct = {tuple(out[i].flatten()[::97].tolist()) for i in range(12)}
    assert len(distinct) >= 4, "samples should get their own draws"


@pytest.mark.parametrize("name", POLICIES)
def test_policy_probability_leaves_unchosen_samples_untouched(name):
    x = _photos(batch=32)
    out = create_augmentation(name, p=0.5)(x, _gen(4))
    untouched = sum(torch.equal(out[i], x[i]) for i in range(32))
    assert 4 < untouched < 28


def test_policies_work_in_half_precision():
    x = _photos(batch=4).half()
    out = create_augmentation("trivialaugment", p=1.0)(x, _gen(5))
    assert out.dtype == torch.float16 and out.shape == x.shape


def test_resized_crop_loses_a_marked_corner_in_some_samples():
    x = torch.zeros(32, 3, 32, 32)
    x[:, :, :6, :6] = 1.0  # a white top-left corner
    out = create_augmentation("resized_crop", 0.35, 1.0)(x, _gen(6))
    corner_kept = out.amax(dim=(1, 2, 3)) > 0.5
    assert 0 < int(corner_kept.sum()) < 32
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_resized_crop_keeps_area_and_aspect_within_range():
    """A box of area fraction a in [strength, 1], resized to the image, grows a centred object's area by 1/a:
    at most 1/strength (or less where the box cuts the object)."""
    op = ResizedCrop(strength=0.5, p=1.0)
    x = torch.zeros(64, 1, 64, 64)
    x[:, :, 28:36, 28:36] = 1.0
    grown = op(x, _gen(7)).sum(dim=(1, 2, 3)) / x[0].sum()
    assert grown.max() <= 1.05 / 0.5
    assert grown.mean() > 1.2


@pytest.mark.parametrize("text, name, strength, p", [("randaugment@0.5", "randaugment", None, 0.5),
                                                     ("resized_crop:0.35", "resized_crop", 0.35, None),
                                                     ("trivialaugment", "trivialaugment", None, None),
                                                     ("randaugment:12@0.8", "randaugment", 12.0, 0.8)])
def test_policies_parse(text, name, strength, p):
    (item,) = parse_policy(text).items
    assert (item.name, item.strength, item.p) == (name, strength, p)
    assert str(parse_policy(text)) == text


def test_photo_recipe_runs_as_one_policy():
    augmenter = parse_policy("resized_crop:0.35,hflip,trivialaugment").build()
    x = _photos(batch=6, size=48)
    a, b = augmenter(x, _gen(8)), augmenter(x, _gen(8))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", POLICIES)
def test_policies_keep_the_device(name):
    x = _photos().cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    out = create_augmentation(name, p=1.0)(x, g)
    assert out.device == x.device
    assert torch.equal(out, create_augmentation(name, p=1.0)(x, torch.Generator(device="cuda").manual_seed(0)))


def test_brightness_scales_intensities_log_uniformly_within_its_reach_and_nothing_else():
    images = torch.rand(2000, 3, 4, 4) * 0.1 + 0.05  # dark enough that no factor up to 4 clips
    out = parse_policy("brightness:4@1").build()(images, torch.Generator().manual_seed(0))
    factor = out / images
    per_image = factor.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), rtol=1e-4)  # one factor per image
    logs = per_image[:, 0].log()
    assert logs.min() >= math.log(0.25) - 1e-4 and logs.max() <= math.log(4) + 1e-4
    assert abs(float((logs < 0).float().mean()) - 0.5) < 0.05  # as likely to darken as to brighten
    with pytest.raises(HonedError):
        parse_policy("brightness:0.5").build()
