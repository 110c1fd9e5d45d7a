"""The default image size: small images are upscaled only as far as it pays; photos get the model's size, or
9/7 of it for pretrained weights when they have the pixels."""

from __future__ import annotations

import pandas as pd

from honed.advise.image_size import default_image_size
from honed.data.manifest import Manifest
from tests.conftest import write_image


def _manifest(root, size: tuple[int, int], count: int = 6) -> Manifest:
    paths = [str(write_image(root / f"{i}.png", (i * 20, 90, 40), size=size)) for i in range(count)]
    labels = ["a", "b"] * (count // 2)
    return Manifest(pd.DataFrame({"path": paths, "label": labels, "split": "train"}), classes=["a", "b"])


def test_small_images_get_a_smaller_size_with_its_reason(tmp_path):
    size, reason = default_image_size(_manifest(tmp_path, (32, 32)), "tf_efficientnet_lite0")
    assert size == 128 and "median side of 32 px" in reason and "224" in reason
    size, _ = default_image_size(_manifest(tmp_path / "wide", (50, 30)), "tf_efficientnet_lite0")
    assert size == 128  # the shorter side (30) x 4 = 120, rounded up to a multiple of 32


def test_photos_and_fixed_input_models_get_the_models_size(tmp_path):
    photos = _manifest(tmp_path, (300, 200))
    size, reason = default_image_size(photos, "tf_efficientnet_lite0")
    assert size == 224 and "model's input size" in reason
    assert default_image_size(photos, "test_resnet")[0] == 160  # the model's own pretrained size
    small = _manifest(tmp_path / "small", (32, 32))
    size, reason = default_image_size(small, "vit_tiny_patch16_224")
    assert size == 224 and "fixed input" in reason


def test_unreadable_images_fall_back_to_the_models_size(tmp_path):
    frame = pd.DataFrame({"path": [str(tmp_path / "missing.png")] * 2, "label": ["a", "b"], "split": "train"})
    size, reason = default_image_size(Manifest(frame, classes=["a", "b"]), "tf_efficientnet_lite0")
    assert size == 224 and "no image size" in reason


def test_pretrained_weights_see_large_photos_at_nine_sevenths_of_their_size(tmp_path):
    large = _manifest(tmp_path / "large", (400, 300))  # median shorter side 300 >= 288
    size, reason = default_image_size(large, "tf_efficientnet_lite0", pretrained=True)
    assert size == 288 and "median side 300 px" in reason and "1.65x the compute" in reason
    assert default_image_size(large, "tf_efficientnet_lite0")[0] == 224  # random weights learned no crop size
    assert default_image_size(large, "vit_tiny_patch16_224", pretrained=True)[0] == 224  # fixed input
    short = _manifest(tmp_path / "short", (400, 240))  # 240 px (flowers' median): 288 would only upscale
    size, reason = default_image_size(short, "tf_efficientnet_lite0", pretrained=True)
    assert size == 224 and "288 px would only upscale them" in reason
