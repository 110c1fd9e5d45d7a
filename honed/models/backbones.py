"""Backbones by name: a timm or torchvision model with a head of ``num_outputs``, its weights from a local
file, from pip-shipped ImageNet weights, or from the hub; and the input each backbone's weights expect."""

from __future__ import annotations

import difflib
import os

import timm
import torch.nn as nn
import torchvision.models as tv_models
from timm.data import resolve_model_data_config

from honed.errors import HonedError
from honed.models.pip_weights import PIP_WEIGHTS, pretrained_state_dict
from honed.models.state_dicts import IMAGENET_MEAN, IMAGENET_STD, head_prefix, load_into, read_state_dict

HUB_PREFIX = "hf-hub:"  # timm reads such a model's config (and weights) from the Hugging Face Hub: a network


def create_backbone_with_pretrained(
    model_name: str,
    num_outputs: int,
    *,
    pretrained: bool,
    weights: str | os.PathLike | None,
    drop_rate: float = 0.0,
    drop_path: float = 0.0,
) -> nn.Module:
    """A timm (or, for names only torchvision knows, torchvision) model with a ``num_outputs`` head.

    ``weights=FILE`` loads local weights (head kept only when its shape fits) and wins over ``pretrained``;
    ``pretrained=True`` uses pip-shipped weights when there are some, else the model hub, which needs a network.
    ``drop_rate`` is timm's dropout before the head; for torchvision it resets the head's own Dropout layers.
    ``drop_path`` is timm's ``drop_path_rate`` (stochastic depth); 0 leaves it out, as not every model takes it.
    """
    if num_outputs < 1:
        raise HonedError(f"num_outputs must be at least 1, got {num_outputs}: check the number of classes")
    family = model_family(model_name)
    if weights:
        model = _build(family, model_name, num_outputs, drop_rate, hub=False, drop_path=drop_path)
        load_into(model, read_state_dict(weights), skip_head=False)
        return model
    if pretrained and family == "timm":
        state = pretrained_state_dict(model_name)
        if state is not None:
            model = _build(family, model_name, num_outputs, drop_rate, hub=False, drop_path=drop_path)
            load_into(model, state, skip_head=False)
            return model
    return _build(family, model_name, num_outputs, drop_rate, hub=pretrained, drop_path=drop_path)


def _build(family: str, name: str, num_outputs: int, drop_rate: float, *, hub: bool,
           drop_path: float = 0.0) -> nn.Module:
    try:
        if family == "timm":
            extra = {"drop_rate": drop_rate} if drop_rate > 0 else {}
            extra.update({"drop_path_rate": drop_path} if drop_path > 0 else {})
            return timm.create_model(name, pretrained=hub, num_classes=num_outputs, **extra)
        return _build_torchvision(name, num_outputs, drop_rate, hub=hub)
    except (OSError, RuntimeError, ValueError) as exc:
        cause = (str(exc).strip().splitlines() or [""])[0][:160]
        if name.startswith(HUB_PREFIX):  # even its architecture comes from the hub
            raise HonedError(f"model {name!r} comes from the Hugging Face Hub, which needs a network (none reached: "
                             f"{type(exc).__name__}: {cause}): connect and retry, or use a model with pip-shipped "
                             f"weights: {', '.join(sorted(PIP_WEIGHTS))}") from exc
        if not hub:
            raise
        raise HonedError(
            f"could not download pretrained weights for {name} (no network?): pass --weights FILE, or use a "
            f"model with pip-shipped weights: {', '.join(sorted(PIP_WEIGHTS))} [{type(exc).__name__}: {cause}]"
        ) from exc


def _build_torchvision(name: str, num_outputs: int, drop_rate: float, *, hub: bool) -> nn.Module:
    model = tv_models.get_model(name, weights="DEFAULT" if hub else None)
    prefix = head_prefix(model)
    if prefix is None:
        raise HonedError(f"cannot find the classifier head of torchvision's {name}: use a timm model instead")
    _replace_last_layer(model, prefix, num_outputs)
    for module in model.get_submodule(prefix).modules():
        if isinstance(module, nn.Dropout) and drop_rate > 0:  # torchvision heads without dropout stay so
            module.p = drop_rate
    return model


def _replace_last_layer(model: nn.Module, prefix: str, num_outputs: int) -> None:
    """Swap the head's last Linear (or 1x1 Conv2d, as in SqueezeNet) for one with ``num_outputs`` outputs."""
    head = model.get_submodule(prefix)
    layers = [(n, m) for n, m in head.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise HonedError(f"the head {prefix!r} has no Linear or Conv2d layer to resize: use a timm model instead")
    name, last = layers[-1]
    if isinstance(last, nn.Linear):
        new = nn.Linear(last.in_features, num_outputs)
    else:
        new = nn.Conv2d(last.in_channels, num_outputs, kernel_size=last.kernel_size)
    parent_path, _, attr = f"{prefix}.{name}".rstrip(".").rpartition(".")
    setattr(model.get_submodule(parent_path), attr, new)


def model_family(model_name: str) -> str:
    """'timm' or 'torchvision' for a known name; unknown names raise with the closest known names. ``hf-hub:``
    names are timm's, passed through unchecked: only the hub knows them."""
    if model_name.startswith(HUB_PREFIX) or timm.is_model(model_name):
        return "timm"
    if model_name in _torchvision_names():
        return "torchvision"
    known = sorted(set(timm.list_models()) | set(_torchvision_names()))
    close = difflib.get_close_matches(model_name, known, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else (
        "pick a timm name (timm.list_models('*pattern*')) or a torchvision one (torchvision.models.list_models())")
    raise HonedError(f"unknown model {model_name!r}: {hint}")


def _torchvision_names() -> list[str]:
    return list(tv_models.list_models(module=tv_models))




def model_input_size(model_name: str) -> tuple[int, bool]:
    """``(side, fixed)``: the input size a model's weights expect, from its name (no model is built), and
    whether it takes that size only (timm's ``fixed_input_size``: ViTs and the like)."""
    if model_family(model_name) == "timm":
        cfg = timm.models.get_pretrained_cfg(model_name)
        if cfg is not None:
            return int(cfg.input_size[-1]), bool(cfg.fixed_input_size)
    return 224, False  # torchvision's classification presets


def data_config_for(model: nn.Module) -> dict:
    """Input size, mean, std, interpolation, crop_pct and crop_mode the model's weights expect."""
    if hasattr(model, "pretrained_cfg"):
        return dict(resolve_model_data_config(model))
    return {  # torchvision's classification presets: resize 256, centre crop 224, bilinear
        "input_size": (3, 224, 224), "interpolation": "bilinear", "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD, "crop_pct": 0.875, "crop_mode": "center",
    }
