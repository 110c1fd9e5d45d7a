"""Probes and measurements: transformations do what they say, are deterministic, and measure what they change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from honed.analyze import image_measures as measures
from honed.analyze.factors import (
    FACTORS,
    add_noise,
    blur,
    rotate,
    select_factors,
    shrink,
)
from honed.analyze.sensitivity import (
    bootstrap_interval,
    paired_drop,
    probe_table,
    run_probes,
)
from honed.data.synthetic import render_shape
from honed.errors import HonedError


def shapes(n: int = 24, pixels: int = 32, seed: int = 0, **factors) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 images of squares (class 0) and triangles (class 1) drawn with honed's synthetic renderer."""
    rng = np.random.default_rng(seed)
    base = dict(size=0.7, rotation=0.0, blur=0.0, offset_x=0.0, offset_y=0.0, foreground="white",
                background="black", noise=0.0)
    images, labels = [], []
    for i in range(n):
        shape = ("square", "triangle")[i % 2]
        image = render_shape(shape, pixels, {**base, **factors}, rng)
        images.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
        labels.append(i % 2)
    return torch.stack(images), np.array(labels)


class MeanColour:
    """Predicts class 1 when the image is brighter than a threshold: blind to flips and rotations."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def predict_batch(self, images: torch.Tensor) -> np.ndarray:
        bright = images.float().mean(dim=(1, 2, 3)).numpy() / 255 > self.threshold
        return np.stack([~bright, bright], axis=1).astype(np.float32)


class LeftHeavy:
    """Predicts class 1 when the left half is brighter than the right: a flip swaps its answer."""

    def predict_batch(self, images: torch.Tensor) -> np.ndarray:
        half = images.shape[-1] // 2
        left = images[..., :half].float().mean(dim=(1, 2, 3))
        right = images[..., half:].float().mean(dim=(1, 2, 3))
        return torch.stack([left <= right, left > right], dim=1).float().numpy()


def test_a_flip_invariant_model_shows_no_flip_drop_and_a_flip_sensitive_one_does():
    images = torch.cat([shapes(n=12, offset_x=-0.2)[0], shapes(n=12, offset_x=0.2)[0]])
    targets = np.repeat([1, 0], 12)  # objects on the left, then on the right
    flip = select_factors(["flip"])
    invariant = MeanColour(threshold=float(images.float().mean()) / 255)
    targets_invariant = invariant.predict_batch(images).argmax(1)
    run = run_probes(invariant, images, targets_invariant, "classify", flip, seed=0)
    assert run.clean.mean() == 0 and run.failures["flip", 0].mean() == 0
    sensitive = run_probes(LeftHeavy(), images, targets, "classify", flip, seed=0)
    assert sensitive.clean.mean() == 0 and sensitive.failures["flip", 0].mean() == 1


def test_probes_are_deterministic_for_a_seed():
    images, labels = shapes()
    model = LeftHeavy()
    factors = select_factors(["rotation", "translation", "brightness", "hue", "noise"])  # those that draw
    a = run_probes(model, images, labels, "classify", factors, seed=3, measure=True)
    b = run_probes(model, images, labels, "classify", factors, seed=3, measure=True)
    assert a.failures.keys() == b.failures.keys()
    for key in a.failures:
        np.testing.assert_array_equal(a.failures[key], b.failures[key])
    for key in a.measured:
        assert torch.equal(a.measured[key], b.measured[key])
    rows = probe_table(a, factors, image_set="training", scale=0.5, seed=3)
    assert rows == probe_table(b, factors, image_set="training", scale=0.5, seed=3)
    assert len(rows) == sum(len(f.strengths) for f in factors)
    other = run_probes(model, images, labels, "classify", factors, seed=4, measure=True)
    assert any(not torch.equal(a.measured[k], other.measured[k]) for k in a.measured)  # the seed matters


def test_paired_drop_interval_brackets_the_mean_and_is_zero_without_change():
    clean = np.array([0, 0, 1, 0, 1, 0, 0, 0, 1, 0], float)
    worse = np.ones_like(clean)
    drop, low, high = paired_drop(clean, worse, seed=0)
    assert low <= drop <= high and drop == pytest.approx(0.7)
    assert paired_drop(clean, clean, seed=0) == (0.0, 0.0, 0.0)
    assert all(np.isnan(bootstrap_interval(np.array([]), seed=0)))


def test_measurements_follow_their_transformations():
    images, _ = shapes(n=8)
    x = images.float() / 255
    g = torch.Generator().manual_seed(0)
    size = measures.object_size(x)
    assert measures.object_size(shrink(x, 0.5, g)) == pytest.approx(0.5 * size, rel=0.15)
    assert (measures.sharpness(blur(x, 1.5, g)) < 0.6 * measures.sharpness(x)).all()
    grey = x * 0.5 + 0.25  # away from 0 and 1, where noise would be clipped
    level = [float(measures.noise_level(add_noise(grey, sigma, g)).median()) for sigma in (0.0, 0.05, 0.1)]
    assert level[0] < 0.005 and level[2] == pytest.approx(2 * level[1], rel=0.25)
    dull = x * 0.5
    assert (measures.contrast(dull) < 0.6 * measures.contrast(x)).all()
    tiny, _ = shapes(n=8, size=0.25)
    assert (measures.contrast(tiny.float() / 255) > 0.9 * measures.contrast(x)).all()  # size is not contrast


def test_circular_offset_estimates_rotation_in_degrees():
    images, _ = shapes(n=16)
    x = images.float() / 255
    reference = measures.orientation_histogram(x)
    turned = rotate(x, 30.0, torch.Generator().manual_seed(0))
    angles = measures.circular_offset(measures.orientation_histogram(turned), reference)
    assert float(angles.median()) == pytest.approx(30.0, abs=6.0)
    upright = measures.circular_offset(reference, reference, exclude_self=True)
    assert float(upright.median()) < 5.0


def test_transformations_keep_range_and_fill_with_the_background():
    images, _ = shapes(n=4, foreground="red", background="#203040")
    x = images.float() / 255
    g = torch.Generator().manual_seed(0)
    for factor in FACTORS:
        for strength in factor.strengths:
            out = factor.transform(x, strength, g)
            assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, factor.name
    corner = shrink(x, 0.3, g)[:, :, 0, 0]
    assert torch.allclose(corner, measures.border_colour(x), atol=2 / 255)


def test_unknown_probe_names_list_the_valid_ones():
    with pytest.raises(HonedError, match="unknown probe.*rotation"):
        select_factors(["rotation", "wobble"])
