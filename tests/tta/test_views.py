"""Test-time views: batched tensor ops with exact, checkable geometry; names that fail helpfully."""

from __future__ import annotations

import pytest
import torch

from honed.errors import HonedError
from honed.tta import GROUPS, TTASetting, expand_views, get_view, list_views, register_view


def _ramp(size: int = 8) -> torch.Tensor:
    """A [2, 3, S, S] batch whose pixel values name their position, two different samples."""
    grid = torch.arange(size * size, dtype=torch.float32).view(1, 1, size, size) / (size * size)
    return torch.cat([grid.expand(1, 3, size, size), 1 - grid.expand(1, 3, size, size)])


@pytest.mark.parametrize("name", [n for n in list_views() if n not in GROUPS])
def test_every_view_keeps_the_batch_shape_and_range(name):
    x = _ramp(16)
    y = get_view(name)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= -1e-6 and float(y.max()) <= 1 + 1e-6


def test_views_transform_as_named():
    x = _ramp(8)
    assert torch.equal(get_view("identity")(x), x)
    assert torch.equal(get_view("hflip")(x), x.flip(-1))
    assert torch.equal(get_view("vflip")(x), x.flip(-2))
    right = get_view("shift_right")(x)  # by 1/16 of 8 px, at least 1 px, the left column repeated
    assert torch.equal(right[..., 1:], x[..., :-1]) and torch.equal(right[..., 0], x[..., 0])
    up = get_view("shift_up")(x)
    assert torch.equal(up[..., :-1, :], x[..., 1:, :]) and torch.equal(up[..., -1, :], x[..., -1, :])
    big = torch.rand(1, 3, 64, 64)
    top_left = get_view("crop_tl")(big)  # the top-left 56 px, resized back to 64
    expected = torch.nn.functional.interpolate(big[..., :56, :56], size=(64, 64), mode="bilinear",
                                               align_corners=False, antialias=True)
    torch.testing.assert_close(top_left, expected)
    assert not torch.equal(get_view("crop_tl")(big), get_view("crop_br")(big))


def test_a_batch_is_transformed_as_its_samples_would_be_one_by_one():
    x = torch.rand(5, 3, 24, 24)
    for name in ("crop_center", "zoom_in", "zoom_out", "shift_down", "hflip"):
        whole = get_view(name)(x)
        for i in range(5):
            torch.testing.assert_close(whole[i:i + 1], get_view(name)(x[i:i + 1]))


def test_groups_expand_in_order_without_duplicates_and_augmentations_are_seeded_views():
    assert expand_views("flip,crops") == ("identity", "hflip", "crop_center", "crop_tl", "crop_tr", "crop_bl",
                                          "crop_br")
    assert expand_views("flip,scales") == ("identity", "hflip", "zoom_out", "zoom_in")
    assert expand_views(["hflip", "identity"]) == ("hflip", "identity")
    assert expand_views("aug:rotate:10x3") == ("aug:rotate:10#0", "aug:rotate:10#1", "aug:rotate:10#2")
    x = torch.rand(4, 3, 16, 16)
    first, again, other = (get_view(n)(x) for n in ("aug:rotate:10#0", "aug:rotate:10#0", "aug:rotate:10#1"))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, x)  # applied to every sample (p = 1)


@pytest.mark.parametrize("spec, message", [
    ("flop", "unknown test-time view 'flop'.*(did you mean flip)"),
    ("aug:nosuch", "unknown augmentation 'nosuch'"),
    ("aug:mixup", "mixes images and labels"),
    ("aug:rotate:1Ox2", "bad augmentation view"),
    ("aug:rotate:10x100", "1 to 64"),
    ("", "no test-time views"),
])
def test_bad_view_names_fail_helpfully(spec, message):
    with pytest.raises(HonedError, match=message):
        expand_views(spec)


def test_registering_a_view_twice_is_refused():
    with pytest.raises(HonedError, match="already registered"):
        register_view("hflip")(lambda x: x)
    with pytest.raises(HonedError, match="already registered"):
        register_view("flip")(lambda x: x)  # a group's name too


@pytest.mark.parametrize("raw, message", [
    ({"views": ["identity"], "aggregate": "mean"}, "exactly the keys"),
    ({"views": ["identity", "nope"], "aggregate": "mean", "weights": None}, "unknown test-time view 'nope'"),
    ({"views": ["identity"], "aggregate": "median", "weights": None}, "unknown TTA aggregation"),
    ({"views": ["identity", "hflip"], "aggregate": "mean", "weights": [0.5, 0.5]}, "go with aggregate 'learned'"),
    ({"views": ["identity", "hflip"], "aggregate": "learned", "weights": [0.9, 0.9]}, "summing to 1"),
    ({"views": ["identity", "identity"], "aggregate": "mean", "weights": None}, "distinct views"),
    ({"views": "identity", "aggregate": "mean", "weights": None}, "list of view names"),
])
def test_stored_settings_are_validated_strictly(raw, message):
    with pytest.raises(HonedError, match=message):
        TTASetting.from_dict(raw)
    setting = TTASetting.parse("flip", "learned", (0.25, 0.75))
    assert TTASetting.from_dict(setting.to_dict()) == setting
