"""A model tied to its input size refuses another one in a line, before its first forward pass fails."""

from __future__ import annotations

import pytest
import timm

from honed.data.config import PreprocessConfig
from honed.errors import HonedError
from honed.models.factory import with_preprocess_defaults


def test_a_fixed_input_model_refuses_another_size_and_a_convnet_takes_it():
    vit = timm.create_model("test_vit", num_classes=2)  # timm's fixed_input_size, 160 px
    assert with_preprocess_defaults(PreprocessConfig(), vit).image_size == 160
    assert with_preprocess_defaults(PreprocessConfig(image_size=160), vit).image_size == 160
    with pytest.raises(HonedError, match="test_vit takes 160-px inputs only.*not 64"):
        with_preprocess_defaults(PreprocessConfig(image_size=64), vit)
    convnet = timm.create_model("test_resnet", num_classes=2)
    assert with_preprocess_defaults(PreprocessConfig(image_size=64), convnet).image_size == 64
