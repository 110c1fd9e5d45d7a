"""Augmentation registry, batched ops, policies and previews."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from honed.augment import (
    BatchAugmentation,
    BatchMix,
    Policy,
    PolicyItem,
    create_augmentation,
    list_augmentations,
    parse_policy,
    preview_grid,
    register_augmentation,
)
from honed.augment import registry
from honed.augment.ops import Rotate, Scale
from honed.errors import HonedError

MIXERS = ["cutmix", "mixup"]
IMAGE_OPS = [n for n in list_augmentations() if n not in MIXERS]
FIXED_OPS = ["grayscale", "hflip", "vflip"]  # no random parameters: per-sample randomness is only whether
RANDOM_OPS = [n for n in IMAGE_OPS if n not in FIXED_OPS]
SQUARE_ONLY = {"quarter_turn"}  # a turned non-square batch would change shape: those are left as they are


def _scene(batch: int = 4, height: int = 24, width: int = 32, seed: int = 0) -> torch.Tensor:
    """Textured, coloured, asymmetric images: a gradient, an off-centre box and some texture."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None].expand(height, width)
    xs = torch.linspace(0, 1, width)[None, :].expand(height, width)
    base = torch.stack([xs, ys, 1 - xs * ys]) * 0.6
    x = base.expand(batch, 3, height, width).clone()
    x[:, :, 4:12, 6:14] = torch.tensor([0.9, 0.2, 0.1])[:, None, None]
    return (x + 0.1 * torch.rand(x.shape, generator=g)).clamp(0, 1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _object(size: int = 32, half: int = 8) -> torch.Tensor:
    """One white square of side 2*half centred on black, [1, 3, size, size]."""
    x = torch.zeros(1, 3, size, size)
    c = size // 2
    x[:, :, c - half : c + half, c - half : c + half] = 1.0
    return x


# ------------------------------------------------------------------------------------------------ registry


def test_registry_lists_every_augmentation_and_filters_with_wildcards():
    expected = {
        "hflip", "vflip", "crop", "resized_crop", "translate", "rotate", "scale", "shear", "perspective",
        "elastic", "color", "channel_shift", "grayscale", "noise", "blur", "jpeg", "erase", "mixup", "cutmix",
    }
    assert expected <= set(list_augmentations())
    assert list_augmentations("*flip") == ["hflip", "vflip"]
    assert list_augmentations("nothing*") == []


def test_unknown_name_lists_valid_names():
    with pytest.raises(HonedError) as err:
        create_augmentation("rotat")
    assert "rotate" in str(err.value) and "hflip" in str(err.value)


def test_duplicate_registration_refused_and_new_names_register(monkeypatch):
    monkeypatch.setattr(registry, "AUGMENTATIONS", registry.AUGMENTATIONS.copy())
    with pytest.raises(HonedError, match="already registered"):
        register_augmentation("rotate", default_strength=1.0)(lambda s, p: Rotate(strength=s, p=p))

    @register_augmentation("spin", default_strength=30.0, help="test")
    def spin(strength: float, p: float) -> BatchAugmentation:
        return Rotate(strength=strength, p=p)

    built = create_augmentation("spin")
    assert isinstance(built, Rotate) and built.strength == 30.0 and built.p == 1.0
    assert "spin" in list_augmentations()


@pytest.mark.parametrize("name, strength, p", [("scale", 2.0, None), ("rotate", -5.0, None), ("hflip", None, 1.5)])
def test_bad_strength_or_probability_is_a_user_error(name, strength, p):
    with pytest.raises(HonedError, match=name):
        create_augmentation(name, strength, p)


def test_uint8_input_is_refused_with_the_fix():
    with pytest.raises(HonedError, match="float"):
        create_augmentation("hflip", p=1.0)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


# ------------------------------------------------------------------------------------------------ every op


@pytest.mark.parametrize("name", IMAGE_OPS)
def test_op_keeps_shape_dtype_range_and_is_reproducible(name):
    x = _scene()
    op = create_augmentation(name, p=1.0)
    out = op(x, _gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, op(x, _gen(1)))
    assert op(x, None).shape == x.shape  # the global generator works too


@pytest.mark.parametrize("name", IMAGE_OPS + MIXERS)
def test_p_zero_is_identity(name):
    x = _scene()
    op = create_augmentation(name, p=0.0)
    if isinstance(op, BatchMix):
        y = torch.eye(4)
        out_x, out_y = op(x, y, _gen())
        assert torch.equal(out_x, x) and torch.equal(out_y, y)
    else:
        assert torch.equal(op(x, _gen()), x)


@pytest.mark.parametrize("name", RANDOM_OPS)
def test_parameters_are_drawn_per_sample(name):
    square = name in SQUARE_ONLY
    x = _scene(batch=1, width=24 if square else 32).expand(6, -1, -1, -1).contiguous()
    out = create_augmentation(name, p=1.0)(x, _gen(2))
    assert not torch.allclose(out[0], x[0], atol=1e-3), "p=1 should change the image"
    assert any(not torch.allclose(out[0], out[i], atol=1e-4) for i in range(1, 6)), "all samples got the same draw"


@pytest.mark.parametrize("name", FIXED_OPS)
def test_probability_is_drawn_per_sample(name):
    x = _scene(batch=1).expand(32, -1, -1, -1).contiguous()
    out = create_augmentation(name, p=0.5)(x, _gen(3))
    changed = [(out[i] - x[i]).abs().max() > 1e-6 for i in range(32)]
    assert 4 < sum(changed) < 28


@pytest.mark.parametrize(
    "name, strength", [("rotate", 0), ("shear", 0), ("translate", 0), ("perspective", 0), ("elastic", 0),
                       ("scale", 1), ("crop", 0), ("color", 0), ("channel_shift", 0), ("noise", 0)]
)
def test_zero_strength_is_identity(name, strength):
    x = _scene()
    assert torch.allclose(create_augmentation(name, strength, 1.0)(x, _gen()), x, atol=1e-4)


# ------------------------------------------------------------------------------------------------ semantics


def test_flips_equal_tensor_flips():
    x = _scene()
    assert torch.equal(create_augmentation("hflip", p=1.0)(x), x.flip(-1))
    assert torch.equal(create_augmentation("vflip", p=1.0)(x), x.flip(-2))


def test_rotate_by_90_matches_rot90_and_moves_mass():
    x = torch.zeros(1, 3, 16, 16)
    x[:, :, 0:2, 0:8] = 1.0  # a bar along the top-left edge
    out = Rotate(strength=90, p=1.0).warp(x, torch.tensor([90.0]))
    assert torch.allclose(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)  # counter-clockwise
    assert out[..., :, :8].sum() > 0.9 * x.sum() and out[..., 0:2, :].sum() < 0.2 * x.sum()


def test_random_rotation_tilts_a_bar():
    x = torch.zeros(16, 3, 33, 33)
    x[:, :, 16, 4:29] = 1.0  # horizontal bar through the centre
    out = create_augmentation("rotate", 90.0, 1.0)(x, _gen())
    rows = torch.arange(33.0)[None, :, None]
    spread = lambda t: ((t[:, 0] * (rows - 16) ** 2).sum((1, 2)) / t[:, 0].sum((1, 2))).mean()  # noqa: E731
    assert spread(out) > 10 * (spread(x) + 1)


def test_scale_below_one_shrinks_the_object_and_surrounds_it_with_the_background():
    x = _object()
    half = Scale(strength=0.5, p=1.0).warp(x, torch.tensor([0.5]))
    assert 0.2 < half.sum() / x.sum() < 0.3  # area goes with the square of the scale
    scene = torch.full((8, 3, 32, 32), 0.6)  # a grey background ...
    scene[:, :, 8:24, 8:24] = torch.rand(8, 3, 16, 16, generator=_gen())  # ... around an object, darker and lighter
    out = create_augmentation("scale", 0.5, 1.0)(scene, _gen())
    assert torch.allclose(out[:, :, 0, :], torch.tensor(0.6), atol=1e-5)  # the frame is background, not black
    object_pixels = lambda t: ((t - 0.6).abs().sum(1) > 1e-3).float().sum((1, 2))  # noqa: E731
    assert (object_pixels(out) < object_pixels(scene)).all()  # smaller ...
    assert out.min() < 0.05 and out.max() > 0.95  # ... with pixels darker than the background kept (no clamp)


def test_resized_crop_zooms_in():
    x = _object().expand(16, -1, -1, -1)
    out = create_augmentation("resized_crop", 0.3, 1.0)(x, _gen())
    assert out.sum() > 1.3 * x.sum()


def test_crop_is_a_shift_of_the_reflect_padded_image():
    x = _scene(batch=6)
    out = create_augmentation("crop", 3.0, 1.0)(x, _gen())
    padded = F.pad(x, (3, 3, 3, 3), mode="reflect")
    for i in range(6):
        windows = [padded[i, :, dy : dy + 24, dx : dx + 32] for dy in range(7) for dx in range(7)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_translate_moves_the_centroid_within_bounds():
    x = _object(half=4).expand(16, -1, -1, -1)
    out = create_augmentation("translate", 0.2, 1.0)(x, _gen())
    cols = torch.arange(32.0)
    centroid = (out[:, 0].sum(1) * cols).sum(1) / out[:, 0].sum((1, 2))
    shift = (centroid - 15.5).abs()
    assert shift.max() <= 0.2 * 32 + 0.5 and shift.max() > 1.0


def test_grayscale_makes_channels_equal():
    out = create_augmentation("grayscale", p=1.0)(_scene())
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


def test_color_jitter_keeps_grey_grey_and_changes_colour():
    grey = _scene()[:, :1].expand(-1, 3, -1, -1).contiguous()
    out = create_augmentation("color", 0.5, 1.0)(grey, _gen())
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-4) and torch.allclose(out[:, 1], out[:, 2], atol=1e-4)
    assert (out - grey).abs().mean() > 0.01


def test_channel_shift_adds_one_offset_per_channel():
    x = torch.full((4, 3, 8, 8), 0.5)
    delta = create_augmentation("channel_shift", 0.2, 1.0)(x, _gen()) - x
    assert torch.allclose(delta, delta[:, :, :1, :1].expand_as(delta), atol=1e-6)
    assert delta.abs().max() <= 0.2 + 1e-6 and delta.abs().max() > 0.01


def _high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean((1, 2, 3)) + (x[..., 1:] - x[..., :-1]).pow(2).mean((1, 2, 3))


def test_blur_lowers_high_frequency_energy():
    x = torch.rand(8, 3, 24, 24, generator=_gen())
    out = create_augmentation("blur", 2.0, 1.0)(x, _gen())
    before, after = _high_frequency_energy(x), _high_frequency_energy(out)
    assert (after <= before + 1e-6).all() and after.mean() < 0.5 * before.mean()


def test_noise_raises_std():
    x = torch.full((8, 3, 16, 16), 0.5)
    out = create_augmentation("noise", 0.1, 1.0)(x, _gen())
    assert out.std() > 0.02 and out.std() < 0.1


def test_harsher_jpeg_loses_more():
    x = _scene(batch=8)
    mild = (create_augmentation("jpeg", 95.0, 1.0)(x, _gen()) - x).abs().mean()
    harsh = (create_augmentation("jpeg", 2.0, 1.0)(x, _gen()) - x).abs().mean()
    assert harsh > mild > 0


def test_erase_replaces_one_box_of_bounded_area():
    x = torch.zeros(16, 3, 20, 20)
    out = create_augmentation("erase", 0.2, 1.0)(x, _gen())
    changed = (out != x).any(1)  # [B, H, W]
    for mask in changed:
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert mask.sum() == box and box <= 0.2 * 400 * 1.3 + 20


# ------------------------------------------------------------------------------------------------ mixers


@pytest.mark.parametrize("name", MIXERS)
def test_mixers_conserve_label_mass_and_match_pixel_shares(name):
    n = 8
    values = torch.linspace(0, 1, n)
    x = values.view(n, 1, 1, 1).expand(n, 3, 16, 16).contiguous()  # sample i is the constant values[i]
    y = torch.eye(n)
    mixed_x, mixed_y = create_augmentation(name, 1.0, 1.0)(x, y, _gen(4))
    assert torch.allclose(mixed_y.sum(1), torch.ones(n))
    assert torch.allclose(mixed_x.mean((1, 2, 3)), mixed_y @ values, atol=1e-5)  # labels weigh what is shown
    assert not torch.equal(mixed_x, x)


def test_mixers_refuse_class_indices():
    with pytest.raises(HonedError, match="one_hot"):
        create_augmentation("mixup", p=1.0)(_scene(), torch.tensor([0, 1, 2, 3]))


# ------------------------------------------------------------------------------------------------ policy


@pytest.mark.parametrize(
    "text", ["hflip,rotate:15,color:0.3@0.5,mixup:0.2", "", "hflip@0.25", "crop:4,erase:0.1@0.3,cutmix"]
)
def test_policy_text_round_trips(text):
    policy = parse_policy(text)
    assert str(policy) == text
    assert Policy.from_list(policy.to_list()) == policy


def test_policy_reads_spaces_and_normalises_numbers():
    policy = parse_policy(" hflip , rotate:15.0@1 ")
    assert policy.items == (PolicyItem("hflip"), PolicyItem("rotate", 15.0, 1.0))
    assert str(policy) == "hflip,rotate:15@1"
    assert Policy.from_list(["hflip", {"name": "rotate", "strength": 15, "p": 1}]) == policy


@pytest.mark.parametrize(
    "text, bad", [("hflip,rotat:15", "rotat"), ("rotate:abc", "abc"), ("rotate@x", "x"), ("hflip,,rotate", "''"),
                  ("rotate:1:2", "rotate:1:2"), ("color@1.5", "color@1.5"), ("scale:3", "scale:3"),
                  ("rotate:nan", "nan")]
)
def test_bad_policy_tokens_name_the_token(text, bad):
    with pytest.raises(HonedError) as err:
        parse_policy(text)
    assert bad in str(err.value)


def test_bad_yaml_entry_is_a_user_error():
    with pytest.raises(HonedError, match="name, strength, p"):
        Policy.from_list([{"name": "hflip", "prob": 0.5}])


def test_empty_policy_is_identity():
    augmenter = parse_policy("").build()
    x, y = _scene(), torch.eye(4)
    assert augmenter(x) is x
    assert augmenter.mix(x, y) == (x, y) and not augmenter.has_mix


def test_built_policy_separates_mixers_and_is_reproducible():
    augmenter = parse_policy("hflip@0.5,mixup:0.2,rotate:20,cutmix").build()
    assert [type(m).__name__ for m in augmenter.ops] == ["HFlip", "Rotate"]
    assert [type(m).__name__ for m in augmenter.mixers] == ["Mixup", "CutMix"]
    x, y = _scene(batch=8), torch.eye(8)
    a, b = augmenter(x, _gen(5)), augmenter(x, _gen(5))
    assert torch.equal(a, b) and not torch.equal(a, x)
    (mx, my), (mx2, my2) = augmenter.mix(a, y, _gen(6)), augmenter.mix(a, y, _gen(6))
    assert torch.equal(mx, mx2) and torch.equal(my, my2)
    assert torch.allclose(my.sum(1), torch.ones(8))


# ------------------------------------------------------------------------------------------------ preview


def test_preview_writes_a_png_grid(tmp_path):
    images = (_scene(batch=3, height=16, width=16) * 255).to(torch.uint8)
    path = preview_grid(images, "hflip,rotate:30,color:0.4,cutmix", tmp_path / "sub" / "grid.png", rows=2, draws=3)
    with Image.open(path) as img:
        assert img.format == "PNG"
        tile = 96 + 2  # 16 px enlarged to 96 (min_tile), plus padding
        assert img.size == (4 * tile + 2, 2 * tile + 2)


def test_preview_refuses_float_images(tmp_path):
    with pytest.raises(HonedError, match="uint8"):
        preview_grid(_scene(), "hflip", tmp_path / "grid.png")


def test_policy_round_trips_through_yaml():
    yaml = pytest.importorskip("yaml")
    policy = parse_policy("hflip,rotate:15,color:0.3@0.5,mixup:0.2")
    assert Policy.from_list(yaml.safe_load(yaml.safe_dump(policy.to_list()))) == policy


def test_quarter_turns_turn_square_images_and_leave_others_alone():
    square = _scene(batch=8, width=24)
    out = create_augmentation("quarter_turn", p=1.0)(square, _gen(4))
    turned = [min(range(1, 4), key=lambda k: float((torch.rot90(square[i], k, dims=(-2, -1)) - out[i]).abs().max()))
              for i in range(8)]
    for i, k in enumerate(turned):
        assert torch.equal(out[i], torch.rot90(square[i], k, dims=(-2, -1)))  # exactly 1, 2 or 3 quarters
    wide = _scene(batch=2)
    assert torch.equal(create_augmentation("quarter_turn", p=1.0)(wide, _gen(4)), wide)
