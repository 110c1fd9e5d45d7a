"""More augmentation that fits the images: the reflect-pad crop for small images, resized crops and
TrivialAugmentWide for photos, with the measured size in the reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from honed.analyze.image_sizes import SMALL_SIDE, ImageSizes, measure_sizes
from honed.analyze.ranking import FactorScore
from honed.analyze.recommend import (
    PHOTO_AUGMENTATION,
    SMALL_IMAGE_AUGMENTATION,
    input_size_for_small_objects,
    merge_policy,
    recommend,
    to_apply,
)
from honed.augment import parse_policy

GAP = {"relative_gap": 0.6}  # a train/validation gap no factor explains: asks for regularization


def _weak_factor() -> FactorScore:
    nan = float("nan")
    return FactorScore("blur", "blur", "blurry images", 0.05, 0.05, 0.0, [0.1], [1.0], 1.0, 0.5, 0, 0, nan, nan,
                       [nan, nan], 0, False, "blur:1")


def _regularization(sizes: ImageSizes | None):
    (rec,) = recommend([_weak_factor()], gap=GAP, drop_rate=0.0, weight_decay=0.01, sizes=sizes)
    assert rec.group == "regularization"
    return rec


def _write(path, width: int, height: int, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path, format=fmt)


def test_small_images_keep_the_reflect_pad_crop():
    rec = _regularization(ImageSizes(median_side=32, median_width=32, median_height=32, images=256))
    assert rec.policy == SMALL_IMAGE_AUGMENTATION == "crop:0.125"
    assert "median side 32 px" in rec.reason and "reflect-pad" in rec.reason and "CIFAR" in rec.reason
    assert rec.evidence["image_sizes"]["small"] is True


def test_photos_get_resized_crops_and_a_standard_policy_with_the_size_in_the_reason():
    rec = _regularization(ImageSizes(median_side=375, median_width=500, median_height=375, images=240))
    assert rec.policy == PHOTO_AUGMENTATION
    assert [i.name for i in parse_policy(rec.policy).items] == ["resized_crop", "trivialaugment"]
    assert "photos with median side 375 px" in rec.reason and "resized crops" in rec.reason
    assert "reflect-pad crop suits small images" in rec.reason
    assert rec.regularization == {"drop_rate": 0.2, "weight_decay": 0.05}
    assert to_apply([rec])[0].policy == PHOTO_AUGMENTATION


def test_the_threshold_is_the_median_shorter_side():
    at = ImageSizes(median_side=SMALL_SIDE, median_width=100, median_height=SMALL_SIDE, images=10)
    above = ImageSizes(median_side=SMALL_SIDE + 1, median_width=100, median_height=SMALL_SIDE + 1, images=10)
    assert _regularization(at).policy == SMALL_IMAGE_AUGMENTATION
    assert _regularization(above).policy == PHOTO_AUGMENTATION


def test_unknown_sizes_fall_back_to_the_crop_and_say_so():
    rec = _regularization(None)
    assert rec.policy == SMALL_IMAGE_AUGMENTATION and "unreadable" in rec.reason


def test_factor_recommendations_do_not_depend_on_sizes():
    nan = float("nan")
    rotation = FactorScore("rotation", "rotation", "rotated", 0.8, 0.8, 0.0, [0.5], [1.0], 1.0, 0.9, 0, 1, nan, nan,
                           [nan, nan], 0, True, "rotate:40@0.8")
    photos = ImageSizes(median_side=375, median_width=500, median_height=375, images=10)
    recs = recommend([rotation], gap={"relative_gap": 0.5}, drop_rate=0, weight_decay=0, sizes=photos)
    assert [(r.group, r.policy, r.reason) for r in recs] == [("rotation", "rotate:40@0.8", "")]


def test_sizes_are_read_from_file_headers(tmp_path):
    for i, (w, h) in enumerate([(500, 375), (375, 500), (640, 480), (300, 200), (500, 333)]):
        _write(tmp_path / f"{i}.jpg", w, h, "JPEG")
    sizes = measure_sizes(sorted(str(p) for p in tmp_path.glob("*.jpg")))
    assert sizes is not None and sizes.images == 5
    assert sizes.median_side == 375 and sizes.median_width == 500 and sizes.median_height == 375
    assert not sizes.small and sizes.describe().startswith("photos with median side 375 px")
    assert measure_sizes([]) is None
    assert measure_sizes([str(tmp_path / "missing.png")]) is None


@pytest.mark.parametrize("base, expected", [("hflip,crop:4", "hflip,resized_crop:0.35,trivialaugment"),
                                            ("randaugment,hflip", "trivialaugment,hflip,resized_crop:0.35"),
                                            ("", PHOTO_AUGMENTATION)])
def test_merging_the_photo_recipe_replaces_the_alternatives(base, expected):
    assert merge_policy(base, [PHOTO_AUGMENTATION]) == expected
    assert merge_policy("resized_crop:0.5,hflip", [SMALL_IMAGE_AUGMENTATION]) == "crop:0.125,hflip"


def test_an_analysis_measures_the_run_images(tmp_path, one_thread):
    """A tiny run on 240 x 320 photos, trained at 16 px: the analysis reads the original size."""
    from honed.analyze import analyze_run
    from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
    from honed.training.fit import train

    rng = np.random.default_rng(0)
    for cls, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        for i in range(10):
            noise = rng.integers(-30, 30, (240, 320, 3))
            pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
            (tmp_path / "photos" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(tmp_path / "photos" / cls / f"{i}.jpg")
    config = RunConfig(name="photos", workspace=str(tmp_path / "ws"),
                       data=DataConfig(source=str(tmp_path / "photos"), val_fraction=0.25),
                       model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                       train=TrainConfig(epochs=1, batch_size=8, lr=1e-2, workers=0, seed=0))
    run = train(config).run_dir
    analysis = analyze_run(run, workers=0, reference_images=8, probes=["flip"], save=False)
    measured = analysis.summary["image_sizes"]
    assert measured["median_side"] == 240 and measured["median_width"] == 320 and measured["small"] is False
    sizes = ImageSizes(**{k: v for k, v in measured.items() if k != "small"})
    assert _regularization(sizes).policy == PHOTO_AUGMENTATION


def _size_factor(matched: float) -> FactorScore:
    nan = float("nan")
    return FactorScore("size", "scale", "small objects", 0.6, 0.6, 0.0, [0.5], [0.5], matched, 0.8, 0, 1, nan, nan,
                       [nan, nan], 0, True, "scale:0.4@0.8")


@pytest.mark.parametrize("objects, input_size, side, expected", [
    (0.5, 112, 375, 224),  # objects half as large: twice the side
    (0.4, 112, 375, 224),  # ... and no more than twice (4x the compute)
    (0.3, 112, 200, 192),  # ... nor beyond what the originals hold
    (0.8, 112, 375, 0),  # 140 px: under 1.25x, floored to 128: not worth the cost
    (0.5, 32, 32, 0),  # small images: upscaling adds no detail
    (0.5, 0, 375, 0),  # a network tied to its input size
    (1.0, 112, 375, 0),  # objects as large as in training
])
def test_the_input_size_for_small_objects(objects, input_size, side, expected):
    sizes = ImageSizes(median_side=side, median_width=side, median_height=side, images=10)
    assert input_size_for_small_objects(objects, input_size, sizes) == expected


def test_a_scale_fix_by_sensitivity_uses_the_matched_size_of_the_validation_objects():
    photos = ImageSizes(median_side=375, median_width=500, median_height=375, images=10)
    (rec,) = recommend([_size_factor(0.5)], gap={"relative_gap": 0.5}, drop_rate=0, weight_decay=0, sizes=photos,
                       epochs=5, input_size=112)
    assert rec.group == "scale" and rec.training == {"epochs": 10.0, "image_size": 224.0}
    assert rec.reason.startswith("objects about 0.5x as large") and "median side 375 px" in rec.reason
    same = recommend([_size_factor(1.0)], gap={"relative_gap": 0.5}, drop_rate=0, weight_decay=0, sizes=photos,
                     epochs=5, input_size=112)
    assert same[0].training == {"epochs": 10.0} and same[0].reason == ""


def test_a_candidate_at_a_larger_input_trains_there_and_is_priced_by_its_pixels(tmp_path):
    from honed.analyze.candidates import candidate_config, compute_ratio, from_analysis
    from honed.config import DataConfig, PreprocessConfig, RunConfig, TrainConfig

    saved = {"recommendations": [{"group": "scale", "title": "t", "score": 0.6, "policy": "scale:0.4@0.8",
                                  "regularization": {}, "training": {"epochs": 10.0, "image_size": 224.0}}]}
    (found,) = from_analysis(saved)
    assert found.image_size == 224 and found.epochs == 10
    parent = RunConfig(name="base", data=DataConfig(source="x"), preprocess=PreprocessConfig(image_size=112),
                       train=TrainConfig(epochs=5))
    assert compute_ratio(parent, found) == 4.0
    config = candidate_config(parent, tmp_path / "base", found, epochs=5, name="child")
    assert config.preprocess.image_size == 224 and config.train.augment == "scale:0.4@0.8"
    assert "image size 112 -> 224" in config.change and config.model.weights.endswith("best.safetensors")


def test_only_a_network_that_takes_larger_inputs_may_be_trained_at_one():
    """A convnet that pools globally takes twice the side; a head on flattened pixels (as a ViT's fixed position
    embeddings) does not, and the analysis then offers no larger input."""
    import types

    import torch

    from honed.analyze.analysis import _resizable_input

    pooled = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                 torch.nn.Linear(4, 2))
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    images = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    assert _resizable_input(types.SimpleNamespace(model=pooled.train()), images) == 16
    assert pooled.training  # left as it was found
    assert _resizable_input(types.SimpleNamespace(model=flat), images) == 0
    assert _resizable_input(object(), images) == 0  # no network to look into (a custom predictor)
