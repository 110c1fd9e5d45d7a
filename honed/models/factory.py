"""``build_model``: the network a run's model section describes; ``with_preprocess_defaults``: the
preprocessing it expects, from the model's own pretrained config, where the user left it empty.

Two regularization options change the architecture, so they live here where every consumer (training,
``honed.load``, bundles, export) rebuilds the model from ``config.yaml``:

- ``head_bn``: the classifier's last Linear becomes ``BatchNorm1d(features) -> Dropout(p) -> Linear``,
  registered under the head's own name, so transfer strategies, ``reset_new_head`` and the head-key logic
  of ``honed.models.state_dicts`` see the whole block as "the head". ``p`` is ``drop_rate``; the model's own
  dropout before the classifier is taken out (timm: built with ``drop_rate=0``; torchvision: a Dropout right
  before the Linear becomes Identity, its ``p`` kept as the default): dropout feeding batch norm shifts the
  variance between training and inference (Li et al., "Understanding the disharmony between dropout and
  batch normalization", 2019), so the only dropout sits after the norm.
- ``drop_path``: timm's ``drop_path_rate`` (stochastic depth), refused for models that have none.
"""

from __future__ import annotations

import torch.nn as nn

from dataclasses import replace

from honed.data.config import PreprocessConfig
from honed.errors import HonedError
from honed.models.config import ModelConfig
from honed.models.stages import head_name
from honed.models.backbones import create_backbone_with_pretrained, data_config_for, model_family
from honed.models.state_dicts import head_keys, read_state_dict


def build_model(options: ModelConfig, num_outputs: int, *, for_inference: bool = False) -> nn.Module:
    """Create the network. For inference the architecture is built without any weights: the run's own weights
    are loaded next."""
    _check_drop_path(options.name, options.drop_path)
    try:
        model = create_backbone_with_pretrained(
            options.name, num_outputs,
            pretrained=options.pretrained and not for_inference,
            weights=None if for_inference else (options.weights or None),
            drop_rate=0.0 if options.head_bn else options.drop_rate, drop_path=options.drop_path)
    except TypeError as error:
        if options.drop_path > 0 and "drop_path_rate" in str(error):
            raise HonedError(f"{options.name} has no stochastic depth (timm's drop_path_rate): leave out "
                             "--drop-path, or pick a model that has it (resnet, efficientnet, convnext, vit)") from None
        raise
    if options.drop_path > 0 and not _has_drop_path(model):
        raise HonedError(f"{options.name} ignores --drop-path (it builds no DropPath layer): leave it out")
    if options.head_bn:
        add_head_bn(model, options.drop_rate)
        if options.weights and not for_inference:
            _load_head(model, options.weights)
    return model


def with_preprocess_defaults(preprocess: PreprocessConfig, model: nn.Module) -> PreprocessConfig:
    """``preprocess`` with its empty fields (size, mean, std) filled from the model's pretrained config; a size
    that a model tied to its input size (timm's ``fixed_input_size``: a ViT's position embeddings) cannot take
    is refused in one line instead of failing in its first forward pass."""
    defaults = data_config_for(model)
    side = int(defaults["input_size"][-1])
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if preprocess.image_size and preprocess.image_size != side and cfg.get("fixed_input_size"):
        raise HonedError(f"{cfg.get('architecture', type(model).__name__)} takes {side}-px inputs only (its "
                         f"input size is fixed): leave out the image size or give {side}, not "
                         f"{preprocess.image_size}")
    return replace(preprocess,
                   image_size=preprocess.image_size or side,
                   mean=list(preprocess.mean) or [float(v) for v in defaults["mean"]],
                   std=list(preprocess.std) or [float(v) for v in defaults["std"]])


def add_head_bn(model: nn.Module, drop_rate: float) -> nn.Module:
    """Replace the head's last Linear by ``BatchNorm1d -> Dropout -> Linear`` (in place; returns the block).

    The new Linear keeps the old one's initial weights; the norm starts as the identity (gamma 1, beta 0)."""
    head = head_name(model)
    linears = [n for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and (n == head or n.startswith(head + "."))]
    if not linears:
        raise HonedError(f"the head {head!r} of {type(model).__name__} has no Linear layer to put batch norm "
                         "before: leave out --head-bn")
    name = linears[-1]
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    linear = parent.get_submodule(attr)
    p = drop_rate
    if isinstance(parent, nn.Sequential):  # torchvision: Dropout right before the Linear (EfficientNet, VGG)
        keys = list(parent._modules)
        before = keys[keys.index(attr) - 1] if keys.index(attr) > 0 else None
        if before is not None and isinstance(parent._modules[before], nn.Dropout):
            p = drop_rate or parent._modules[before].p
            parent._modules[before] = nn.Identity()
    block = nn.Sequential(nn.BatchNorm1d(linear.in_features), nn.Dropout(p), linear)
    setattr(parent, attr, block)
    return block


def _load_head(model: nn.Module, weights: str) -> None:
    """--weights from a run that had a head_bn head too: its head tensors that fit are loaded (the backbone
    was loaded before the head was replaced, so the file's head could not be)."""
    state = read_state_dict(weights)
    own = model.state_dict()
    fitting = {k: state[k] for k in head_keys(model) if k in state and state[k].shape == own[k].shape}
    model.load_state_dict(fitting, strict=False)


def _check_drop_path(name: str, drop_path: float) -> None:
    if drop_path > 0 and model_family(name) != "timm":
        raise HonedError(f"--drop-path is timm's stochastic depth; torchvision's {name} does not take it: "
                         "leave it out, or use the timm version of the model")


def _has_drop_path(model: nn.Module) -> bool:
    return any("DropPath" in type(m).__name__ for m in model.modules())
