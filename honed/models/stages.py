"""Backbone stages: the groups of layers a transfer strategy freezes, unfreezes or trains at its own rate.

``backbone_stages(model)`` returns module names per stage, from the stem (input side) to the last stage
before the head, discovered from the model rather than hard-coded per architecture:

- timm models describe their stages in ``model.feature_info``: one entry per reduction stage, naming the
  module whose output is that stage's feature map (``blocks.2``, ``layer3``, ``stages.1``). A stage runs to
  its feature module inclusive; what follows the last one (EfficientNet's ``conv_head``/``bn2``, a ViT's
  final ``norm``) joins the last stage; what precedes a first feature module that is a container of blocks
  (EfficientNet's ``conv_stem``/``bn1``, a ViT's ``patch_embed``) is the stem.
- other models (torchvision): the top-level children before the head, in order. Consecutive single layers
  (conv, norm, activation) form one stage, closed by a pooling layer; a container of blocks is a stage.
  While that gives fewer than ``MIN_STAGES``, the largest container is split into its children (VGG's
  ``features``, RegNet's ``trunk_output``, a ViT's ``encoder.layers``).

Names are module names, or parameter names for tensors a container holds directly (a ViT's ``cls_token``).
Layers without parameters are left out; every parameter outside the head is in exactly one stage.
"""

from __future__ import annotations

import torch.nn as nn

from honed.errors import HonedError

HEAD_NAMES = ("fc", "classifier", "heads", "head")  # torchvision's classifier attributes, in that order
MIN_STAGES = 4  # fewer stages than this on a torchvision model: split the largest container further
POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.MaxPool1d, nn.AvgPool1d)  # parameterless layers that close a stage


def backbone_stages(model: nn.Module) -> list[list[str]]:
    """Module (or parameter) names per stage, stem first; the classifier head is in none of them."""
    head = head_name(model)
    stages = _timm_stages(model, head) or _generic_stages(model, head)
    stages = [[n for n in stage if _has_parameters(model, n)] for stage in stages]
    stages = [stage for stage in stages if stage]
    if not stages:
        raise HonedError(f"{type(model).__name__} has no parameters outside its head: nothing to fine-tune")
    return stages


def head_name(model: nn.Module) -> str:
    """The classifier head's module name: timm's ``get_classifier()``, or torchvision's fc/classifier/heads."""
    if hasattr(model, "get_classifier"):
        classifier = model.get_classifier()
        name = next((n for n, m in model.named_modules() if m is classifier and n), None)
        if name:
            return name
    for name in HEAD_NAMES:
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    raise HonedError(f"cannot find the classifier head of {type(model).__name__}: use --strategy full or scratch")


def stage_parameters(model: nn.Module, names: list[str]) -> list[nn.Parameter]:
    """The parameters of one stage (its modules' and the tensors named directly)."""
    params: list[nn.Parameter] = []
    for name in names:
        try:
            params += list(model.get_submodule(name).parameters())
        except AttributeError:
            params.append(model.get_parameter(name))
    return params


# ---------------------------------------------------------------------------------------------------- timm


def _timm_stages(model: nn.Module, head: str) -> list[list[str]] | None:
    """Stages from timm's ``feature_info``; None when the model has none, or it does not name its modules."""
    info = getattr(model, "feature_info", None)
    try:
        marks = [entry["module"] for entry in info] if info else []
    except (TypeError, KeyError):
        return None
    modules = dict(model.named_modules())
    if not marks or any(m not in modules for m in marks):
        return None
    units = _units(model, "", _ancestors(marks + [head]), head)
    if [u for u in units if u in marks] != marks:  # feature modules out of order: do not guess
        return None
    stages, current = [], []
    for unit in units:
        current.append(unit)
        if unit in marks:
            stages.append(current)
            current = []
    if current:  # after the last feature module, before the head: part of the last stage
        stages[-1] += current
    first = stages[0]
    if len(first) > 1 and _is_container(model, first[-1]):  # the first mark is a container of blocks
        stages[0:1] = [first[:-1], first[-1:]]  # what precedes it is the stem
    return stages


# ---------------------------------------------------------------------------------------------------- generic


def _generic_stages(model: nn.Module, head: str) -> list[list[str]]:
    """Top-level children before the head, grouped; the largest container split while stages are few."""
    units = _units(model, "", _ancestors([head]), head)
    stages = _group(model, units)
    while len(stages) < MIN_STAGES:
        containers = [u for u in units if _is_container(model, u)]
        if not containers:
            break
        largest = max(containers, key=lambda u: _count(model, u))
        index = units.index(largest)
        units[index:index + 1] = _units(model.get_submodule(largest), largest + ".", set(), head)
        stages = _group(model, units)
    return stages


def _group(model: nn.Module, units: list[str]) -> list[list[str]]:
    """Consecutive single layers form a stage that a pooling layer closes; each container is a stage."""
    stages, current = [], []
    for unit in units:
        if _is_container(model, unit):
            stages += [current, [unit]] if current else [[unit]]
            current = []
            continue
        current.append(unit)
        if isinstance(_module_or_none(model, unit), POOLING):
            stages.append(current)
            current = []
    if current:
        stages.append(current)
    return [s for s in stages if any(_has_parameters(model, n) for n in s)]


# ---------------------------------------------------------------------------------------------------- helpers


def _units(module: nn.Module, prefix: str, open_up: set[str], head: str) -> list[str]:
    """Names in forward (registration) order: tensors held directly, then children; containers named in
    ``open_up`` are replaced by their own units; the head is left out."""
    units = [prefix + name for name, _ in module.named_parameters(recurse=False)]
    for name, child in module.named_children():
        full = prefix + name
        if full == head:
            continue
        units += _units(child, full + ".", open_up, head) if full in open_up else [full]
    return units


def _ancestors(names: list[str]) -> set[str]:
    """Every proper prefix of the dotted names: 'blocks.2' -> {'blocks'}."""
    parts = [n.split(".") for n in names if n]
    return {".".join(p[:i]) for p in parts for i in range(1, len(p))}


def _module_or_none(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _is_container(model: nn.Module, name: str) -> bool:
    module = _module_or_none(model, name)
    return module is not None and any(_has_parameters(module, n) for n, _ in module.named_children())


def _has_parameters(model: nn.Module, name: str) -> bool:
    module = _module_or_none(model, name)
    if module is None:
        return True  # a parameter held directly
    return any(True for _ in module.parameters())


def _count(model: nn.Module, name: str) -> int:
    return sum(p.numel() for p in model.get_submodule(name).parameters())
