"""``build_model``: the network a RunConfig describes, with preprocessing defaults from the model itself."""

from __future__ import annotations

import torch.nn as nn

from honed.config import RunConfig
from honed.models.weights import create_backbone_with_pretrained, data_config_for


def build_model(config: RunConfig, num_outputs: int, *, for_inference: bool = False) -> nn.Module:
    """Create the model and fill ``config.preprocess`` from its pretrained config where the user left it empty.

    For inference the architecture is built without any weights: the run's own weights are loaded next."""
    model = create_backbone_with_pretrained(
        config.model.name, num_outputs,
        pretrained=config.model.pretrained and not for_inference,
        weights=None if for_inference else (config.model.weights or None),
        drop_rate=config.model.drop_rate)
    defaults = data_config_for(model)
    if not config.preprocess.image_size:
        config.preprocess.image_size = int(defaults["input_size"][-1])
    if not config.preprocess.mean:
        config.preprocess.mean = [float(v) for v in defaults["mean"]]
    if not config.preprocess.std:
        config.preprocess.std = [float(v) for v in defaults["std"]]
    return model
